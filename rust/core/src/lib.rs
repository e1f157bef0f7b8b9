//! sparse-mlp-core: truly sparse multilayer perceptrons on CPUs.
//!
//! Only existing connections are stored and computed: CSC layers with a
//! transposed index view ([`csc`]), kernels on feature-major activations
//! ([`kernels`]), momentum SGD ([`optim`]), Erdős–Rényi initialization
//! ([`init`]), SET and neuron removal ([`topology`]), neuron recycling
//! ([`recycle`]), and the training loop
//! ([`network`]). Knows nothing of Python; the bindings crate wraps it.

pub mod activation;
pub mod bench;
pub mod columns;
pub mod csc;
pub mod error;
pub mod init;
pub mod kernels;
pub mod layer;
pub mod loss;
pub mod network;
pub mod optim;
pub mod precision;
pub mod profile;
pub mod recycle;
pub mod regrowth;
pub mod remap;
pub mod rigl;
pub mod rng;
pub mod simd;
pub mod topology;

pub use activation::Activation;
pub use csc::SparseMatrix;
pub use error::{CoreError, Result};
pub use init::WeightInit;
pub use layer::Layer;
pub use loss::Loss;
pub use network::{
    labels_from_i64, optimizer_name, EpochStats, Network, NetworkSpec, RunState, Target, Targets,
    TrainConfig,
};
pub use optim::{Method, Optimizer, Sgd, OPTIMIZER_NAMES};
pub use profile::Profile;
pub use rng::Rng;
pub use topology::SetStep;
