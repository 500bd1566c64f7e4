//! The learning-rate schedule as a burn `LrScheduler`.

use burn::lr_scheduler::LrScheduler;
use burn::tensor::backend::Backend;

use crate::config::LrSchedule;

/// A [`LrSchedule`] over a known number of optimizer steps; its record is the step count, so a
/// resumed run continues the schedule where it stopped.
#[derive(Debug, Clone)]
pub struct Scheduler {
    schedule: LrSchedule,
    base: f64,
    steps_per_epoch: usize,
    total_steps: usize,
    step: usize,
}

impl Scheduler {
    /// A schedule for `epochs` epochs of `steps_per_epoch` optimizer steps from `base`.
    pub fn new(schedule: LrSchedule, base: f64, steps_per_epoch: usize, epochs: usize) -> Self {
        Self {
            schedule,
            base,
            steps_per_epoch: steps_per_epoch.max(1),
            total_steps: (steps_per_epoch * epochs).max(1),
            step: 0,
        }
    }

    /// The rate at optimizer step `step` (from 0).
    pub fn rate_at(&self, step: usize) -> f64 {
        match self.schedule {
            LrSchedule::Constant => self.base,
            LrSchedule::Cosine { min_lr } => {
                let t = (step as f64 / self.total_steps as f64).min(1.0);
                min_lr + 0.5 * (self.base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            LrSchedule::Step {
                every_epochs,
                gamma,
            } => {
                let epoch = step / self.steps_per_epoch;
                self.base * gamma.powi((epoch / every_epochs) as i32)
            }
        }
    }
}

impl LrScheduler for Scheduler {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> f64 {
        let rate = self.rate_at(self.step);
        self.step += 1;
        rate
    }

    fn to_record<B: Backend>(&self) -> usize {
        self.step
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.step = record;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_formulas() {
        let constant = Scheduler::new(LrSchedule::Constant, 1e-3, 10, 5);
        assert_eq!(constant.rate_at(37), 1e-3);
        let cosine = Scheduler::new(LrSchedule::Cosine { min_lr: 1e-4 }, 1e-3, 10, 10);
        assert!((cosine.rate_at(0) - 1e-3).abs() < 1e-15);
        assert!((cosine.rate_at(50) - 5.5e-4).abs() < 1e-12);
        assert!((cosine.rate_at(100) - 1e-4).abs() < 1e-15);
        let step = Scheduler::new(
            LrSchedule::Step {
                every_epochs: 2,
                gamma: 0.5,
            },
            1.0,
            10,
            10,
        );
        assert_eq!(
            (step.rate_at(19), step.rate_at(20), step.rate_at(45)),
            (1.0, 0.5, 0.25)
        );
    }
}
