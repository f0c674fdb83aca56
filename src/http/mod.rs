//! The HTTP listener's core, no pgrx: `answer.rs` decides what a request becomes and how each
//! outcome is answered, `server.rs` serves HTTP/1.1 within the limits. The worker that owns
//! them and runs the calls is `src/listener.rs`.

pub mod answer;
pub mod server;
