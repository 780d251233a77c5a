//! Stop signals named in an `AppSpec`: "SIGTERM", "TERM" or "15".
//! (The runtime's `kill` verb parses its own argument with real-time names too;
//! an app's stop signal is one of the standard ones.)

use std::str::FromStr;

use nix::sys::signal::Signal;

pub fn parse(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_numbers() {
        use nix::sys::signal::Signal;
        assert_eq!(super::parse("TERM"), Some(Signal::SIGTERM));
        assert_eq!(super::parse("sigquit"), Some(Signal::SIGQUIT));
        assert_eq!(super::parse("9"), Some(Signal::SIGKILL));
        assert_eq!(super::parse("NOPE"), None);
    }
}
