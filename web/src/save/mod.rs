//! Saving: a change's parts and bounds (`change`), the pipeline every save goes through
//! (`pipeline`: authorise → validate → diff → commit → conflict), the confirmation of a
//! previewed change (`confirm`) and revert (`revert`). The forms and the raw editor propose
//! changes to it.

pub mod change;
pub mod confirm;
pub mod pipeline;
pub mod revert;
