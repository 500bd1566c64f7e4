//! # vae — variational autoencoders in Rust, on burn
//!
//! One facade over the project's crates, so an application needs one dependency:
//!
//! | module | crate | what it holds |
//! |---|---|---|
//! | [`core`] | `vae-core` | distributions, KL, the ELBO with named terms, β / warm-up / free bits, IWAE, log p(x) |
//! | [`models`] | `vae-models` | `Encoder` / `Decoder` traits, MLP and conv architectures, the generic `Vae` |
//! | [`data`] | `vae-data` | MNIST-format and CelebA loaders, image folders, verified downloads |
//! | [`train`] | `vae-train` | the `Trainer`, runs (`ModelSpec`, `RunDir`, `train_run`, `evaluate_run`, `sample_run`), checkpoints, evaluation, pictures |
//! | [`cli`] | `vae-cli` | the `train` / `eval` / `sample` / `data` command line for any `ModelSpec` |
//!
//! The contract everything follows: `ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)) ≤ log p(x)`;
//! the ELBO is maximised, so the training loss is **−ELBO** ([`core::Elbo::loss`]). Terms are
//! summed over data and latent dimensions, averaged over the batch, and reported in nats per
//! example under names that carry their sign: `neg_elbo_nats`, `log_likelihood_nats`, `kl_nats`.
//!
//! ```
//! use vae::burn::backend::Flex;
//! use vae::burn::tensor::{Distribution, Tensor};
//! use vae::models::MlpVaeConfig;
//!
//! let device = Default::default();
//! let vae = MlpVaeConfig::kingma_welling(784).init::<Flex>(&device);
//! let x = Tensor::<Flex, 2>::random([8, 784], Distribution::Uniform(0.0, 1.0), &device);
//! let elbo = vae.elbo(x);                      // per-example terms, nats
//! let summary = elbo.summary();
//! assert!(summary.kl_nats >= 0.0);             // KL is reported non-negative
//! assert_eq!(summary.neg_elbo_nats, summary.kl_nats - summary.log_likelihood_nats);
//! let loss = elbo.loss();                      // −mean ELBO: minimise this
//! # let _ = loss;
//! ```

/// The burn version this project is built on (pinned to 0.21.0), for matching backends.
pub use burn;
pub use vae_cli as cli;
pub use vae_core as core;
pub use vae_data as data;
pub use vae_models as models;
pub use vae_train as train;
