pub use vae_core as core;
