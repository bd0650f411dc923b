//! The page for phones on the home LAN (docs/web.md § Phones on the home LAN): off by
//! default; with `web_lan` set, the node serves the page over TLS on that address with a
//! self-signed certificate of its own, and only to phones paired with a one-time code.
//!
//! The key (`web-lan.key`, 0600) is made once and kept, so its fingerprint (SHA-256 of
//! the certificate's SubjectPublicKeyInfo, the pin a phone checks) stays the same across
//! restarts; the certificate around it is made at each start for the address the node
//! listens on (a new LAN address needs no new pairing).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::session::{Limits, Secrets};

/// The key of the page's LAN certificate, in the data dir (PEM, PKCS #8, 0600).
pub const KEY_FILE: &str = "web-lan.key";

/// Why the page cannot be served on the LAN.
#[derive(Debug, thiserror::Error)]
pub enum LanError {
    #[error(
        "web_lan {0} names no address: give the node's LAN address with a port (like \
         192.168.1.20:8443); the page checks that every request names it"
    )]
    Unspecified(SocketAddr),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a key this node made ({why}): delete it for a new one (phones pair again)"
    )]
    BadKey { path: String, why: String },
    #[error("cannot make the page's TLS certificate: {0}")]
    Certificate(String),
}

/// The page's LAN face: where it listens, its certificate's fingerprint, and the
/// pairing codes and paired phones' sessions (in memory: a restart unpairs every phone).
#[derive(Debug)]
pub struct Lan {
    pub addr: SocketAddr,
    /// SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub spki_sha256: [u8; 32],
    pub(super) secrets: Arc<Mutex<Secrets>>,
}

impl Lan {
    /// The same face at the address its listener got (port 0 asks for any).
    pub fn bound_to(self, addr: SocketAddr) -> Lan {
        Lan { addr, ..self }
    }

    /// The fingerprint as Chromium's `--ignore-certificate-errors-spki-list` and HTTP
    /// public-key pins write it: standard base64.
    pub fn fingerprint(&self) -> String {
        base64(&self.spki_sha256)
    }

    /// The fingerprint as certificate viewers show it ("Public key SHA-256"): hex
    /// bytes in pairs, colon-separated.
    pub fn fingerprint_hex(&self) -> String {
        self.spki_sha256
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Loads (or makes, the first time) the key in `data_dir`, makes a certificate for
/// `addr`, and returns the page's LAN face and the TLS server configuration.
pub fn prepare(
    data_dir: &Path,
    addr: SocketAddr,
) -> Result<(Lan, Arc<rustls::ServerConfig>), LanError> {
    if addr.ip().is_unspecified() {
        return Err(LanError::Unspecified(addr));
    }
    let key = load_or_make_key(&data_dir.join(KEY_FILE))?;
    let mut params = rcgen::CertificateParams::new(vec![addr.ip().to_string()])
        .map_err(|e| LanError::Certificate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Porchlight page");
    let cert = params
        .self_signed(&key)
        .map_err(|e| LanError::Certificate(e.to_string()))?;
    let spki_sha256: [u8; 32] = Sha256::digest(key.public_key_der()).into();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| LanError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| LanError::Certificate(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let lan = Lan {
        addr,
        spki_sha256,
        secrets: Arc::new(Mutex::new(Secrets::new(Limits::PAIRED))),
    };
    Ok((lan, Arc::new(config)))
}

fn load_or_make_key(path: &PathBuf) -> Result<rcgen::KeyPair, LanError> {
    let io = |source| LanError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(pem) => rcgen::KeyPair::from_pem(&pem).map_err(|e| LanError::BadKey {
            path: path.display().to_string(),
            why: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key =
                rcgen::KeyPair::generate().map_err(|e| LanError::Certificate(e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            use std::io::Write;
            let mut file = options.open(path).map_err(io)?;
            file.write_all(key.serialize_pem().as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encodes() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi"), "aGk=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn the_key_is_kept_owner_only_and_its_fingerprint_survives_a_new_address() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a: SocketAddr = "127.0.0.2:8443".parse().expect("addr");
        let b: SocketAddr = "127.0.0.3:9443".parse().expect("addr");
        let (first, _) = prepare(dir.path(), a).expect("prepared");
        let (again, _) = prepare(dir.path(), b).expect("prepared");
        assert_eq!(first.spki_sha256, again.spki_sha256);
        assert_eq!(first.fingerprint().len(), 44);
        assert_eq!(first.fingerprint_hex().len(), 32 * 3 - 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn no_address_and_a_bad_key_are_clear_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let any: SocketAddr = "0.0.0.0:8443".parse().expect("addr");
        let e = prepare(dir.path(), any).expect_err("refused");
        assert!(e.to_string().contains("192.168.1.20:8443"), "{e}");
        assert!(!dir.path().join(KEY_FILE).exists(), "nothing written");
        std::fs::write(dir.path().join(KEY_FILE), "not a key").expect("write");
        let e = prepare(dir.path(), "127.0.0.2:1".parse().expect("addr")).expect_err("bad");
        assert!(e.to_string().contains("delete it"), "{e}");
    }
}
