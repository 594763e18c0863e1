//! yolots-checkpoint: reads PyTorch checkpoints as data, never as code.

pub mod model;
