//! `TCP_NODELAY` on the process's TCP connections to PostgreSQL.
//!
//! Why: sqlx 0.9.0 opens its sockets without it (0.8 set it; sqlx issue 4335, fixed upstream
//! and not yet released), so Nagle's algorithm holds back the rest of a request that the driver
//! writes in more than one piece until the server acknowledges the first, and Linux delays that
//! acknowledgement by up to 40 ms. A request over 16 KiB is such a one: it leaves as two TLS
//! records, two writes. Seen here: a batch of 32 new end users' grants wrote its statement as
//! 16,406 then 10,158 bytes, and PostgreSQL read the end 42 ms later; seeding 10,000 end users
//! with one write lane ran at 650–750 grants/s, p50 48 ms.
//!
//! sqlx shows neither the socket nor a hook where it is made, so once a connection is open the
//! process's TCP sockets connected to the database's port are found in `/proc/self/fd` and the
//! option is set on each (again on those that had it: harmless). Where that directory does not
//! exist (not Linux), nothing is done. Remove this module once sqlx sets the option again.
//! (The write lanes' connections are tokio-postgres's, which sets it itself.)

use std::mem::{size_of, zeroed};

/// Sets `TCP_NODELAY` on every TCP socket of this process whose peer listens on `port`.
pub fn set_on_connections_to(port: u16) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if peer_port(fd) == Some(port) {
            set_nodelay(fd);
        }
    }
}

/// The peer's port of `fd` if it is a connected IPv4 or IPv6 socket.
fn peer_port(fd: i32) -> Option<u16> {
    // SAFETY: `getpeername` writes at most `length` bytes into `address`, a zeroed
    // `sockaddr_storage` large enough for any address. An `fd` closed (or reused) since it was
    // listed only makes the call fail (or describe the new socket): no memory is touched but
    // `address` and `length`.
    unsafe {
        let mut address: libc::sockaddr_storage = zeroed();
        let mut length = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let pointer = (&raw mut address).cast::<libc::sockaddr>();
        if libc::getpeername(fd, pointer, &mut length) != 0 {
            return None;
        }
        match i32::from(address.ss_family) {
            libc::AF_INET => {
                let v4 = &*(&raw const address).cast::<libc::sockaddr_in>();
                Some(u16::from_be(v4.sin_port))
            }
            libc::AF_INET6 => {
                let v6 = &*(&raw const address).cast::<libc::sockaddr_in6>();
                Some(u16::from_be(v6.sin6_port))
            }
            _ => None,
        }
    }
}

fn set_nodelay(fd: i32) {
    let on: libc::c_int = 1;
    // SAFETY: `setsockopt` reads `size_of::<c_int>()` bytes from `on`. On an `fd` reused since
    // it was listed, it fails or sets the option on that socket, which no socket minds.
    let _ = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const on).cast::<libc::c_void>(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn nodelay(stream: &TcpStream) -> bool {
        stream.nodelay().expect("reads TCP_NODELAY")
    }

    #[test]
    fn sets_the_option_on_connections_to_the_port_and_only_those() {
        let database = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let to_database = TcpStream::connect(database.local_addr().unwrap()).unwrap();
        let to_other = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(
            !nodelay(&to_database) && !nodelay(&to_other),
            "off by default"
        );

        set_on_connections_to(database.local_addr().unwrap().port());

        assert!(nodelay(&to_database));
        assert!(!nodelay(&to_other));
    }
}
