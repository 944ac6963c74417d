//! vswitchd's control socket, as a client: one JSON-RPC request per
//! connection, answered on one line.

use config::rpc::{Request, Response};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nobody answers at the socket (vswitchd is down or elsewhere).
    #[error("vswitchd at {0} does not answer: {1}")]
    Unreachable(PathBuf, String),
    /// vswitchd refused the request, saying why.
    #[error("vswitchd refused {0}: {1}")]
    Refused(String, String),
    /// The answer was not a response.
    #[error("vswitchd answered {0} with something else: {1}")]
    Protocol(String, String),
}

/// A client of the socket at a path.
#[derive(Debug, Clone)]
pub struct Control {
    path: PathBuf,
}

impl Control {
    /// The client of the socket at `path`.
    pub fn new(path: &Path) -> Control {
        Control { path: path.to_path_buf() }
    }

    /// Calls `method` with `params` (an object, or null for none).
    pub fn call(&self, method: &str, params: Value) -> Result<Value, ControlError> {
        let down = |e: std::io::Error| ControlError::Unreachable(self.path.clone(), e.to_string());
        let mut s = UnixStream::connect(&self.path).map_err(down)?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(down)?;
        let params = if params.is_null() { None } else { Some(params) };
        let mut line = serde_json::to_string(&Request::new(method, params, 1)).unwrap_or_default();
        line.push('\n');
        s.write_all(line.as_bytes()).map_err(down)?;
        let mut answer = String::new();
        BufReader::new(&s).read_line(&mut answer).map_err(down)?;
        let r: Response =
            serde_json::from_str(&answer).map_err(|e| ControlError::Protocol(method.into(), e.to_string()))?;
        match (r.result, r.error) {
            (_, Some(e)) => Err(ControlError::Refused(method.into(), e.message)),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        }
    }
}
