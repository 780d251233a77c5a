//! `AppSpec.health` and `AppSpec.restart`: Kubernetes' probe semantics and a
//! restart policy with exponential backoff.
//!
//! ```json
//! "health": {
//!   "startup":   {"http": {"path": "/", "port": 8080}, "periodSeconds": 1, "failureThreshold": 30},
//!   "liveness":  {"tcp": {"port": 8080}, "periodSeconds": 10},
//!   "readiness": {"exec": {"command": ["cat", "/tmp/ready"]}, "timeoutSeconds": 2}
//! },
//! "restart": {"policy": "on-failure", "backoffSeconds": 10, "maxBackoffSeconds": 300, "resetSeconds": 600}
//! ```
//!
//! Defaults are Kubernetes': initialDelaySeconds 0, periodSeconds 10,
//! timeoutSeconds 1, successThreshold 1, failureThreshold 3.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The probes of each instance of an app. All optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthSpec {
    /// Liveness and readiness wait until it succeeds; failing it restarts the
    /// instance (as liveness does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
    /// Failing it restarts the instance (same address and writable layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// Only changes the instance's `ready` status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
}

impl HealthSpec {
    pub fn is_empty(&self) -> bool {
        self.startup.is_none() && self.liveness.is_none() && self.readiness.is_none()
    }

    /// The probes present, with their kind.
    pub fn probes(&self) -> impl Iterator<Item = (ProbeKind, &Probe)> {
        [
            (ProbeKind::Startup, self.startup.as_ref()),
            (ProbeKind::Liveness, self.liveness.as_ref()),
            (ProbeKind::Readiness, self.readiness.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.map(|p| (k, p)))
    }

    pub fn validate(&self) -> Result<()> {
        for (kind, p) in self.probes() {
            p.validate(&format!("health.{}", kind.as_str()), kind)?;
        }
        Ok(())
    }
}

/// Which of the three probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "startup",
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
        }
    }
}

/// One probe: exactly one action (`http`, `tcp`, `exec`, `file`) and its timing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileAction>,
    /// Seconds after the container started before the first run.
    #[serde(default)]
    pub initial_delay_seconds: u32,
    #[serde(default = "ten")]
    pub period_seconds: u32,
    /// A run that has not answered by then fails (exec: its process is killed).
    #[serde(default = "one")]
    pub timeout_seconds: u32,
    /// Consecutive successes to count as healthy after a failure (1 for
    /// liveness and startup).
    #[serde(default = "one")]
    pub success_threshold: u32,
    /// Consecutive failures to count as failed.
    #[serde(default = "three")]
    pub failure_threshold: u32,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn ten() -> u32 {
    10
}

/// GET `path` on `port`; healthy on a 2xx or 3xx status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpAction {
    #[serde(default = "slash")]
    pub path: String,
    pub port: u16,
    /// Default: the instance's address (127.0.0.1 without one), in its netns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
}

fn slash() -> String {
    "/".into()
}

/// One request header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// A TCP connect to `port` succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpAction {
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<std::net::IpAddr>,
}

/// `command` run inside the instance (the runtime's exec) exits 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    pub command: Vec<String>,
}

/// This path exists inside the instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileAction {
    pub path: String,
}

/// What a probe does, once its spec is validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Http(HttpAction),
    Tcp(TcpAction),
    Exec(ExecAction),
    File(FileAction),
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Spec {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Probe {
    /// A probe of `action` with Kubernetes' default timing.
    pub fn new(action: Action) -> Probe {
        let mut p = Probe {
            http: None,
            tcp: None,
            exec: None,
            file: None,
            initial_delay_seconds: 0,
            period_seconds: 10,
            timeout_seconds: 1,
            success_threshold: 1,
            failure_threshold: 3,
        };
        match action {
            Action::Http(a) => p.http = Some(a),
            Action::Tcp(a) => p.tcp = Some(a),
            Action::Exec(a) => p.exec = Some(a),
            Action::File(a) => p.file = Some(a),
        }
        p
    }

    /// The one action (validated specs have exactly one).
    pub fn action(&self) -> Option<Action> {
        if let Some(a) = &self.http {
            return Some(Action::Http(a.clone()));
        }
        if let Some(a) = &self.tcp {
            return Some(Action::Tcp(a.clone()));
        }
        if let Some(a) = &self.exec {
            return Some(Action::Exec(a.clone()));
        }
        self.file.clone().map(Action::File)
    }

    pub fn validate(&self, field: &str, kind: ProbeKind) -> Result<()> {
        let n = [
            self.http.is_some(),
            self.tcp.is_some(),
            self.exec.is_some(),
            self.file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            return Err(bad(
                field,
                format!("needs exactly one of http, tcp, exec, file ({n} given)"),
            ));
        }
        if let Some(h) = &self.http {
            if h.port == 0 {
                return Err(bad(format!("{field}.http.port"), "must be 1 to 65535"));
            }
            if !h.path.starts_with('/') || h.path.chars().any(|c| c.is_ascii_control() || c == ' ')
            {
                return Err(bad(
                    format!("{field}.http.path"),
                    format!(
                        "{:?}: an absolute path without spaces or control characters",
                        h.path
                    ),
                ));
            }
            for (i, hd) in h.headers.iter().enumerate() {
                let token = !hd.name.is_empty()
                    && hd
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token {
                    return Err(bad(
                        format!("{field}.http.headers[{i}].name"),
                        format!("{:?} is not a header name", hd.name),
                    ));
                }
                if hd
                    .value
                    .chars()
                    .any(|c| c == '\r' || c == '\n' || c == '\0')
                {
                    return Err(bad(
                        format!("{field}.http.headers[{i}].value"),
                        "has a line break or NUL",
                    ));
                }
            }
        }
        if let Some(t) = &self.tcp {
            if t.port == 0 {
                return Err(bad(format!("{field}.tcp.port"), "must be 1 to 65535"));
            }
        }
        if let Some(e) = &self.exec {
            if e.command.is_empty() || e.command[0].is_empty() {
                return Err(bad(
                    format!("{field}.exec.command"),
                    "needs at least a program",
                ));
            }
            if e.command.iter().any(|a| a.contains('\0')) {
                return Err(bad(format!("{field}.exec.command"), "has a NUL byte"));
            }
        }
        if let Some(f) = &self.file {
            if !f.path.starts_with('/') || f.path.contains('\0') {
                return Err(bad(
                    format!("{field}.file.path"),
                    format!("{:?} is not absolute", f.path),
                ));
            }
        }
        let range = |name: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(bad(
                    format!("{field}.{name}"),
                    format!("{v}: must be {lo} to {hi}"),
                ))
            }
        };
        range("initialDelaySeconds", self.initial_delay_seconds, 0, 86_400)?;
        range("periodSeconds", self.period_seconds, 1, 86_400)?;
        range("timeoutSeconds", self.timeout_seconds, 1, 86_400)?;
        range("successThreshold", self.success_threshold, 1, 1_000)?;
        range("failureThreshold", self.failure_threshold, 1, 1_000)?;
        if kind != ProbeKind::Readiness && self.success_threshold != 1 {
            return Err(bad(
                format!("{field}.successThreshold"),
                format!("must be 1 for a {} probe", kind.as_str()),
            ));
        }
        Ok(())
    }
}

/// When an instance whose container ended is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    /// After a non-zero exit (or a kill), and after a liveness failure.
    OnFailure,
    #[default]
    Always,
}

/// The restart policy and its backoff: the n-th restart in a row waits
/// `backoffSeconds × 2^(n-1)`, at most `maxBackoffSeconds`; an instance that
/// ran `resetSeconds` since its last start starts again from `backoffSeconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartSpec {
    #[serde(default)]
    pub policy: RestartPolicy,
    #[serde(default = "backoff_default")]
    pub backoff_seconds: f64,
    #[serde(default = "max_backoff_default")]
    pub max_backoff_seconds: f64,
    #[serde(default = "reset_default")]
    pub reset_seconds: f64,
}

fn backoff_default() -> f64 {
    10.0
}
fn max_backoff_default() -> f64 {
    300.0
}
fn reset_default() -> f64 {
    600.0
}

impl Default for RestartSpec {
    fn default() -> RestartSpec {
        RestartSpec {
            policy: RestartPolicy::default(),
            backoff_seconds: backoff_default(),
            max_backoff_seconds: max_backoff_default(),
            reset_seconds: reset_default(),
        }
    }
}

impl RestartSpec {
    pub fn is_default(&self) -> bool {
        *self == RestartSpec::default()
    }

    pub fn validate(&self) -> Result<()> {
        let secs = |name: &str, v: f64, lo: f64| {
            if v.is_finite() && v >= lo && v <= 86_400.0 {
                Ok(())
            } else {
                Err(bad(
                    format!("restart.{name}"),
                    format!("{v}: must be {lo} to 86400 seconds"),
                ))
            }
        };
        secs("backoffSeconds", self.backoff_seconds, 0.0)?;
        secs("maxBackoffSeconds", self.max_backoff_seconds, 0.0)?;
        secs("resetSeconds", self.reset_seconds, 0.0)?;
        if self.max_backoff_seconds < self.backoff_seconds {
            return Err(bad(
                "restart.maxBackoffSeconds",
                format!(
                    "{} is below backoffSeconds {}",
                    self.max_backoff_seconds, self.backoff_seconds
                ),
            ));
        }
        Ok(())
    }

    /// The wait before restart number `n` of a row (1-based).
    pub fn backoff(&self, n: u32) -> std::time::Duration {
        let f = 2f64.powi(n.saturating_sub(1).min(60) as i32);
        std::time::Duration::from_secs_f64((self.backoff_seconds * f).min(self.max_backoff_seconds))
    }

    /// Whether an exit with this code is restarted (liveness failures always
    /// are, unless the policy is never).
    pub fn restarts_exit(&self, code: i32) -> bool {
        match self.policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Always => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(s: &str) -> Result<HealthSpec> {
        let h: HealthSpec = crate::app::spec::parse_json(s.as_bytes())?;
        h.validate()?;
        Ok(h)
    }

    #[test]
    fn kubernetes_defaults() {
        let h = health(r#"{"liveness":{"tcp":{"port":80}}}"#).unwrap();
        let p = h.liveness.unwrap();
        assert_eq!(
            (
                p.initial_delay_seconds,
                p.period_seconds,
                p.timeout_seconds,
                p.success_threshold,
                p.failure_threshold
            ),
            (0, 10, 1, 1, 3)
        );
        let r = RestartSpec::default();
        assert_eq!(r.policy, RestartPolicy::Always);
        let waits: Vec<u64> = (1..=7).map(|n| r.backoff(n).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn bad_probes_are_named() {
        for (json, field) in [
            (r#"{"liveness":{}}"#, "health.liveness"),
            (
                r#"{"liveness":{"tcp":{"port":1},"file":{"path":"/a"}}}"#,
                "health.liveness",
            ),
            (
                r#"{"startup":{"tcp":{"port":0}}}"#,
                "health.startup.tcp.port",
            ),
            (
                r#"{"readiness":{"http":{"port":80,"path":"x"}}}"#,
                "health.readiness.http.path",
            ),
            (
                r#"{"readiness":{"http":{"port":80,"headers":[{"name":"a b","value":"v"}]}}}"#,
                "health.readiness.http.headers[0].name",
            ),
            (
                r#"{"liveness":{"tcp":{"port":80},"successThreshold":2}}"#,
                "health.liveness.successThreshold",
            ),
            (
                r#"{"liveness":{"tcp":{"port":80},"periodSeconds":0}}"#,
                "health.liveness.periodSeconds",
            ),
            (
                r#"{"liveness":{"exec":{"command":[]}}}"#,
                "health.liveness.exec.command",
            ),
            (
                r#"{"liveness":{"file":{"path":"rel"}}}"#,
                "health.liveness.file.path",
            ),
            (r#"{"liveness":{"tcp":{"port":80},"period":3}}"#, "liveness"),
        ] {
            let e = health(json).expect_err(json).to_string();
            assert!(e.starts_with(field), "{json}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn restart_spec_checked() {
        let r: RestartSpec = crate::app::spec::parse_json(
            br#"{"policy":"on-failure","backoffSeconds":1,"maxBackoffSeconds":4}"#,
        )
        .unwrap();
        r.validate().unwrap();
        assert!(!r.restarts_exit(0) && r.restarts_exit(137));
        let waits: Vec<u64> = (1..=4).map(|n| r.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 4]);
        let r = RestartSpec {
            max_backoff_seconds: 1.0,
            ..RestartSpec::default()
        };
        assert!(r
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("restart.maxBackoffSeconds"));
        let e = crate::app::spec::parse_json::<RestartSpec>(br#"{"policy":"sometimes"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("policy"), "{e}");
    }
}
