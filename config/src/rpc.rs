//! JSON-RPC 2.0 over the control socket: one request or response per line.
//!
//! `vswitchd` answers; `vswitchctl` and `container-hostd` ask. Errors use
//! the spec's codes for protocol faults and the server range for ours.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The method, e.g. `show`.
    pub method: String,
    /// Parameters (an object), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Id; None for a notification (no answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
}

impl Request {
    /// A request with an id.
    pub fn new(method: &str, params: Option<Value>, id: u64) -> Request {
        Request { jsonrpc: "2.0".into(), method: method.into(), params, id: Some(Value::from(id)) }
    }
}

/// An error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    /// Code (see the constants).
    pub code: i64,
    /// One sentence: what is wrong and, where it can, what to do.
    pub message: String,
    /// Details (for a config error: file, line, column, field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// Not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON, but not a request.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Parameters missing or of the wrong type.
    pub const INVALID_PARAMS: i64 = -32602;
    /// A fault inside the daemon.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The request was understood and refused (bad config, unknown port...).
    pub const REFUSED: i64 = -32000;

    /// An error without details.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError { code, message: message.into(), data: None }
    }
}

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
    /// The request's id (null when it could not be read).
    pub id: Value,
}

impl Response {
    /// Success.
    pub fn ok(id: Value, result: Value) -> Response {
        Response { jsonrpc: "2.0".into(), result: Some(result), error: None, id }
    }
    /// Failure.
    pub fn err(id: Value, error: RpcError) -> Response {
        Response { jsonrpc: "2.0".into(), result: None, error: Some(error), id }
    }
}

/// Reads one line of a client's: the request, or the error response to
/// send back (parse error, invalid request) with the id if one was found.
pub fn parse_request(line: &str) -> Result<Request, Box<Response>> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        Box::new(Response::err(Value::Null, RpcError::new(RpcError::PARSE_ERROR, format!("not JSON: {e}"))))
    })?;
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let req: Request = serde_json::from_value(v).map_err(|e| {
        Box::new(Response::err(
            id.clone(),
            RpcError::new(RpcError::INVALID_REQUEST, format!("not a JSON-RPC 2.0 request: {e}")),
        ))
    })?;
    if req.jsonrpc != "2.0" {
        return Err(Box::new(Response::err(id, RpcError::new(RpcError::INVALID_REQUEST, "`jsonrpc` must be \"2.0\""))));
    }
    if req.params.as_ref().is_some_and(|p| !p.is_object() && !p.is_array()) {
        return Err(Box::new(Response::err(
            id,
            RpcError::new(RpcError::INVALID_REQUEST, "`params` must be an object or an array"),
        )));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_protocol_errors() {
        let r = parse_request(r#"{"jsonrpc":"2.0","method":"show","id":7}"#).unwrap();
        assert_eq!(r.method, "show");
        assert_eq!(r.id, Some(Value::from(7)));
        let e = parse_request("{not json").unwrap_err();
        assert_eq!(e.error.unwrap().code, RpcError::PARSE_ERROR);
        assert_eq!(e.id, Value::Null);
        let e = parse_request(r#"{"jsonrpc":"2.0","id":3}"#).unwrap_err();
        assert_eq!((e.error.unwrap().code, e.id), (RpcError::INVALID_REQUEST, Value::from(3)));
        let e = parse_request(r#"{"jsonrpc":"1.0","method":"show","id":1}"#).unwrap_err();
        assert_eq!(e.error.unwrap().code, RpcError::INVALID_REQUEST);
        let e = parse_request(r#"{"jsonrpc":"2.0","method":"show","params":5,"id":1}"#).unwrap_err();
        assert_eq!(e.error.unwrap().code, RpcError::INVALID_REQUEST);
        let e = parse_request(r#"{"jsonrpc":"2.0","method":"show","id":1,"extra":1}"#).unwrap_err();
        assert_eq!(e.error.unwrap().code, RpcError::INVALID_REQUEST);
    }

    #[test]
    fn responses_serialise_one_of_result_or_error() {
        let ok = serde_json::to_string(&Response::ok(Value::from(1), serde_json::json!({"a": 1}))).unwrap();
        assert_eq!(ok, r#"{"jsonrpc":"2.0","result":{"a":1},"id":1}"#);
        let err = serde_json::to_string(&Response::err(
            Value::from(2),
            RpcError::new(RpcError::METHOD_NOT_FOUND, "no such method `x`"),
        ))
        .unwrap();
        assert_eq!(err, r#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"no such method `x`"},"id":2}"#);
    }
}
