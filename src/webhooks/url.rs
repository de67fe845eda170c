//! Which URLs an endpoint may have: `https`, or `http` to a loopback address when
//! `TALLY_WEBHOOK_ALLOW_HTTP_LOOPBACK` allows it. Refusals are `BAD_USER_INPUT`.

use std::net::IpAddr;

use reqwest::Url;

use crate::error::{Error, Result};

pub const MAX_URL_CHARS: usize = 2_048;

pub fn parse_endpoint_url(value: &str, allow_http_loopback: bool) -> Result<Url> {
    let refuse = |why: &str| Err(Error::bad_input("url", why.to_owned()));
    if value.chars().count() > MAX_URL_CHARS {
        return refuse(&format!("must be at most {MAX_URL_CHARS} characters"));
    }
    if value.chars().any(char::is_control) {
        return refuse("must not contain control characters");
    }
    let Ok(url) = Url::parse(value) else {
        return refuse("is not an absolute URL such as https://example.com/webhooks");
    };
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("must not carry a user name or password");
    }
    if url.host_str().is_none_or(str::is_empty) {
        return refuse("must name a host");
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http_loopback && is_loopback(&url) => Ok(url),
        "http" if allow_http_loopback => refuse("http is allowed only to loopback addresses"),
        "http" => refuse("must be https"),
        _ => refuse("must be an https URL"),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_accepted_and_http_only_to_loopback_when_allowed() {
        assert!(parse_endpoint_url("https://example.com/hooks", false).is_ok());
        assert!(parse_endpoint_url("http://example.com/hooks", false).is_err());
        assert!(parse_endpoint_url("http://127.0.0.1:9000/hooks", false).is_err());
        assert!(parse_endpoint_url("http://127.0.0.1:9000/hooks", true).is_ok());
        assert!(parse_endpoint_url("http://[::1]:9000/", true).is_ok());
        assert!(parse_endpoint_url("http://localhost/", true).is_ok());
        assert!(parse_endpoint_url("http://10.0.0.1/", true).is_err());
    }

    #[test]
    fn malformed_urls_are_refused() {
        for bad in [
            "",
            "example.com",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://exa\0mple.com/",
            "https://example.com/\n",
            "javascript:alert(1)",
        ] {
            assert!(parse_endpoint_url(bad, true).is_err(), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(parse_endpoint_url(&long, false).is_err());
    }
}
