//! The rooms rental service, in clean-architecture layers with dependencies pointing inwards:
//! [`entity`] ← [`repository`] ← [`use_cases`] ← [`http`]. Each layer is tested on its own.

pub mod entity;
pub mod http;
pub mod repository;
pub mod use_cases;
