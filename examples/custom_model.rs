//! Bring your own networks: a small residual-MLP encoder and decoder, written here, trained
//! through the library's run machinery — the same run directory, resume, evaluation and
//! sampling as the built-in models, and the same command line.
//!
//! ```text
//! cargo run --example custom_model                      # library calls: train, resume, eval, sample
//! cargo run --example custom_model -- train fashion-mnist --epochs 3 --out runs/res-mlp
//! cargo run --example custom_model -- eval --run runs/res-mlp --importance-samples 100
//! ```
//!
//! Implementing [`Encoder`] (data → q(z|x)) and [`Decoder`] (z → p(x|z)) gives the model; a
//! [`ModelSpec`] — a serialisable configuration that builds it — gives it runs: the spec is
//! what `config.toml` records under `[model]`, so the run can be rebuilt to resume, evaluate
//! and sample.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, backend::Backend};
use vae::core::{Bernoulli, DiagonalGaussian, ImageShape};
use vae::data::{DataOptions, load_dataset};
use vae::models::{ArchitectureError, Decoder, Encoder, Likelihood, Vae};
use vae::train::{
    EvalOptions, ModelSpec, ModelVisitor, RunConfig, RunDir, RunOptions, TrainingConfig,
    evaluate_run, sample_run, train_run,
};

/// x + W₂ gelu(W₁ LayerNorm(x)).
#[derive(Module, Debug)]
struct ResidualBlock<B: Backend> {
    norm: LayerNorm<B>,
    up: Linear<B>,
    down: Linear<B>,
}

impl<B: Backend> ResidualBlock<B> {
    fn new(width: usize, device: &B::Device) -> Self {
        Self {
            norm: LayerNormConfig::new(width).init(device),
            up: LinearConfig::new(width, 2 * width).init(device),
            down: LinearConfig::new(2 * width, width).init(device),
        }
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.clone()
            + self
                .down
                .forward(gelu(self.up.forward(self.norm.forward(x))))
    }
}

#[derive(Module, Debug)]
struct ResEncoder<B: Backend> {
    input: Linear<B>,
    blocks: Vec<ResidualBlock<B>>,
    mean: Linear<B>,
    log_var: Linear<B>,
}

impl<B: Backend> Encoder<B> for ResEncoder<B> {
    fn encode(&self, x: Tensor<B, 2>) -> DiagonalGaussian<B> {
        let h = self
            .blocks
            .iter()
            .fold(self.input.forward(x), |h, b| b.forward(h));
        DiagonalGaussian::new(self.mean.forward(h.clone()), self.log_var.forward(h))
    }

    fn latent_dim(&self) -> usize {
        self.mean.weight.dims()[1]
    }
}

#[derive(Module, Debug)]
struct ResDecoder<B: Backend> {
    input: Linear<B>,
    blocks: Vec<ResidualBlock<B>>,
    logits: Linear<B>,
}

impl<B: Backend> Decoder<B> for ResDecoder<B> {
    /// Bernoulli from logits: the last layer is linear, no sigmoid.
    type Output = Bernoulli<B>;

    fn decode(&self, z: Tensor<B, 3>) -> Bernoulli<B> {
        let [s, n, l] = z.dims();
        let h = self
            .blocks
            .iter()
            .fold(self.input.forward(z.reshape([s * n, l])), |h, b| {
                b.forward(h)
            });
        let logits = self.logits.forward(h);
        let d = logits.dims()[1];
        Bernoulli::from_logits(logits.reshape([s, n, d]))
    }

    fn data_dim(&self) -> usize {
        self.logits.weight.dims()[1]
    }
}

fn model<B: Backend>(
    d: usize,
    width: usize,
    latent: usize,
    device: &B::Device,
) -> Vae<B, ResEncoder<B>, ResDecoder<B>> {
    let blocks = || (0..2).map(|_| ResidualBlock::new(width, device)).collect();
    Vae::new(
        ResEncoder {
            input: LinearConfig::new(d, width).init(device),
            blocks: blocks(),
            mean: LinearConfig::new(width, latent).init(device),
            log_var: LinearConfig::new(width, latent).init(device),
        },
        ResDecoder {
            input: LinearConfig::new(latent, width).init(device),
            blocks: blocks(),
            logits: LinearConfig::new(width, d).init(device),
        },
    )
}

/// The model's configuration: what a run records under `[model]` in `config.toml`.
#[derive(Config, Debug)]
pub struct ResMlpSpec {
    /// D, values per example.
    pub input_dim: usize,
    /// Width of the residual blocks.
    #[config(default = 256)]
    pub width: usize,
    /// L, the latent size.
    #[config(default = 16)]
    pub latent_dim: usize,
}

impl ModelSpec for ResMlpSpec {
    fn validate(&self, shape: ImageShape) -> Result<(), ArchitectureError> {
        if self.input_dim != shape.num_values() {
            return Err(ArchitectureError::InputDim {
                expected: self.input_dim,
                actual: shape.num_values(),
            });
        }
        if self.width == 0 || self.latent_dim == 0 {
            return Err(ArchitectureError::Setting {
                key: "width / latent_dim".into(),
                expected: "must be ≥ 1".into(),
            });
        }
        Ok(())
    }

    /// Bernoulli logits: bits per dimension are reported as for the built-in MLP.
    fn likelihood(&self) -> Option<Likelihood> {
        Some(Likelihood::Bernoulli)
    }

    fn build<B: AutodiffBackend, V: ModelVisitor<B>>(
        &self,
        device: &B::Device,
        visitor: V,
    ) -> Result<V::Output, ArchitectureError> {
        Ok(visitor.visit(model::<B>(
            self.input_dim,
            self.width,
            self.latent_dim,
            device,
        )))
    }

    /// What `train <dataset>` uses when no `[model]` is configured.
    fn preset(_dataset: &str, shape: ImageShape) -> Option<Self> {
        Some(Self::new(shape.num_values()))
    }
}

type B = Autodiff<Flex>;

fn main() {
    // With arguments, this example *is* a command line: train / eval / sample / data.
    if std::env::args().len() > 1 {
        vae::cli::main::<ResMlpSpec>("custom_model");
        return;
    }
    if let Err(e) = library_run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The same, through library calls: a run directory trained for two epochs, resumed for a
/// third, evaluated with importance sampling, and sampled from.
fn library_run() -> Result<(), Box<dyn std::error::Error>> {
    let device = Default::default();
    let options = DataOptions {
        limit: 5_000,
        ..DataOptions::for_dataset("fashion-mnist")?
    };
    let data = load_dataset("fashion-mnist", None, &options, true)?;
    let mut config = RunConfig {
        dataset: "fashion-mnist".to_string(),
        data: options,
        model: ResMlpSpec::new(data.shape.num_values()),
        training: TrainingConfig {
            epochs: 2,
            ..TrainingConfig::default()
        },
    };
    let dir = PathBuf::from("target/examples/custom-model-run");
    let _ = std::fs::remove_dir_all(&dir);
    let run = RunDir::create(&dir)?;
    let options = RunOptions::new("cpu (burn flex)");
    let first = train_run::<ResMlpSpec, B>(&run, &config, &data, &device, options.clone())?;
    assert!(first.finished(), "stopped: {}", first.stopped.stop);

    // Resume: one more epoch from the epoch-2 checkpoint, with the same optimizer state.
    config.training.epochs = 3;
    let outcome = train_run::<ResMlpSpec, B>(&run, &config, &data, &device, options.resumed())?;
    assert_eq!(outcome.first_epoch, 3);
    let test = outcome.metrics.test.expect("a finished run is evaluated");
    println!(
        "test: neg_elbo_nats={:.2} log_likelihood_nats={:.2} kl_nats={:.2}",
        test.elbo.neg_elbo_nats, test.elbo.log_likelihood_nats, test.elbo.kl_nats
    );

    let eval = EvalOptions {
        importance_samples: 100,
        limit: 200,
    };
    let with_log_px = evaluate_run::<ResMlpSpec, B>(&run, &data, &device, &eval)?;
    println!(
        "first 200 test images: neg_elbo_nats={:.2}, importance-sampled log p(x) (K = 100) = {:.2} nats",
        with_log_px.elbo.neg_elbo_nats,
        with_log_px.is_log_px_nats.unwrap_or(f64::NAN)
    );
    let samples = run.path().join("samples-16.png");
    sample_run::<ResMlpSpec, B>(&run, 16, None, 0, &samples, &device)?;

    let mut files: Vec<String> = std::fs::read_dir(run.path())?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    files.sort();
    println!("{}: {}", run.path().display(), files.join(", "));
    Ok(())
}
