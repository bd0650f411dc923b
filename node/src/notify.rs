//! systemd's service notifications (`sd_notify`, without libsystemd): `READY=1` once
//! the node and its API are up (for `Type=notify`), and `WATCHDOG=1` from the event loop
//! (for `WatchdogSec=`), so that a loop that hangs gets the process restarted. A
//! datagram to the socket systemd names in `$NOTIFY_SOCKET` (a path, or an abstract
//! socket when it starts with `@`). Without it every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

const SOCKET_VAR: &str = "NOTIFY_SOCKET";

/// Sends `state` (`READY=1`, `WATCHDOG=1`, `STOPPING=1`, …) to systemd. `Ok(false)`
/// when not run under a service manager that asked for notifications.
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(socket) = std::env::var_os(SOCKET_VAR) else {
        return Ok(false);
    };
    let datagram = UnixDatagram::unbound()?;
    match socket.as_encoded_bytes().split_first() {
        None => return Ok(false),
        #[cfg(target_os = "linux")]
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            datagram.send_to_addr(state.as_bytes(), &addr)?;
        }
        Some(_) => {
            datagram.send_to(state.as_bytes(), std::path::Path::new(&socket))?;
        }
    }
    Ok(true)
}

/// How often to send `WATCHDOG=1`: half the watchdog timeout systemd set in
/// `$WATCHDOG_USEC` (for this process: `$WATCHDOG_PID`, if set, names it), or `None`.
pub fn watchdog_every() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
