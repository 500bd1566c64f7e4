//! The shape of one image example.

use serde::{Deserialize, Serialize};

/// The shape of one image: channels × height × width.
///
/// Data enters every model flattened to `[N, D]` with D = C·H·W values in C×H×W order; this
/// type says how to fold a row back into an image. One type for the whole workspace: the
/// datasets report it, the convolutional models are configured with it, the pictures use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageShape {
    /// 1 for grey-scale, 3 for RGB.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

impl ImageShape {
    /// A `channels × height × width` shape.
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
        }
    }

    /// A square single-channel shape whose C·H·W equals `values`, if there is one (how a
    /// flattened grey-scale MLP input of 784 values is drawn as 28×28).
    pub fn square_grey(values: usize) -> Option<Self> {
        let side = (values as f64).sqrt().round() as usize;
        (side > 0 && side * side == values).then(|| Self::new(1, side, side))
    }

    /// C · H · W, the flattened size D.
    pub fn num_values(&self) -> usize {
        self.channels * self.height * self.width
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}×{}×{}", self.channels, self.height, self.width)
    }
}

#[cfg(test)]
mod tests {
    use super::ImageShape;

    #[test]
    fn square_grey_finds_the_side_or_nothing() {
        assert_eq!(
            ImageShape::square_grey(784),
            Some(ImageShape::new(1, 28, 28))
        );
        assert_eq!(ImageShape::square_grey(785), None);
        assert_eq!(ImageShape::square_grey(0), None);
    }
}
