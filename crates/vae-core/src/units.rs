//! Units: nats, bits per dimension.

/// ln(2π), the constant in every Gaussian log-density.
pub const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// Converts a negative log-likelihood (or −ELBO) in **nats per example** into **bits per data
/// dimension**: `nats / (D · ln 2)`.
///
/// This is the right unit for discrete likelihoods (Bernoulli on binarised pixels). For a
/// continuous density over pixels scaled to [0, 1], use [`bits_per_dim_8bit`].
pub fn bits_per_dim(nats: f64, num_dims: usize) -> f64 {
    nats / (num_dims as f64 * std::f64::consts::LN_2)
}

/// Bits per dimension of 8-bit images from a negative log-*density* in nats per example,
/// measured on pixels scaled to [0, 1] (x = k / 256 after uniform dequantisation).
///
/// A density on [0, 1]^D is 256^D times a density on [0, 256)^D, so
/// `bits_per_dim_8bit = nats / (D ln 2) + 8`: the figure that papers on 8-bit images report.
/// It is an upper bound on the discrete model's bits/dim only if the data was dequantised with
/// uniform noise; for raw k/255 pixels it is indicative.
pub fn bits_per_dim_8bit(nats: f64, num_dims: usize) -> f64 {
    bits_per_dim(nats, num_dims) + 8.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_2pi_matches_std() {
        assert!((LN_2PI - (2.0 * std::f64::consts::PI).ln()).abs() < 1e-15);
    }

    #[test]
    fn a_uniform_byte_is_eight_bits() {
        // D uniform bytes: −log p = D ln 256 nats.
        let d = 784;
        assert!((bits_per_dim(d as f64 * 256f64.ln(), d) - 8.0).abs() < 1e-12);
        // The uniform density on [0,1]^D has −log p = 0 nats: 8 bits/dim of 8-bit data.
        assert!((bits_per_dim_8bit(0.0, d) - 8.0).abs() < 1e-12);
    }
}
