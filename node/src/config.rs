//! `porchlight.toml` in the data dir: what a person may set without recompiling.

use std::path::Path;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::clips::sharing::ClipPolicy;
use crate::node::Config;

pub const FILE: &str = "porchlight.toml";
/// Default port for TCP and QUIC.
pub const DEFAULT_PORT: u16 = 4001;
/// Default address of the local API.
pub const DEFAULT_API: &str = "127.0.0.1:8484";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {why}")]
    Invalid { path: String, why: String },
}

/// The file's contents. Every field is optional; missing ones take defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct File {
    /// Your display name in the hood.
    pub name: String,
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Find neighbors on the local network.
    pub mdns: bool,
    /// Extra peers to dial at start (`/ip4/…/tcp/…/p2p/<peer id>`).
    pub bootstrap: Vec<String>,
    /// Where the local HTTP API listens (keep it on loopback).
    pub api: String,
    /// Who may fetch your clips: "members", "ask" (you allow each request) or "never".
    pub clip_policy: ClipPolicy,
    /// The MQTT broker of the hub bridge, `mqtt://[user[:password]@]host[:port]`
    /// (docs/hub-integration.md); absent: no bridge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
    /// Frigate's HTTP API, where the bridge fetches clips: `http://host:5000`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frigate: Option<String>,
    /// Frigate's `mqtt.topic_prefix`, if it is not `frigate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frigate_topic_prefix: Option<String>,
    /// `[[auto_post]]` rules: camera drafts they match are posted without a person.
    /// None by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub auto_post: Vec<crate::hub::settings::AutoPostRule>,
    /// Serve the page to phones on the home LAN over TLS, on this address (the node's
    /// LAN address and a port, like `192.168.1.20:8443`); absent: loopback only
    /// (docs/web.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_lan: Option<String>,
    /// Most bytes of clips that no live report references (camera drafts' clips,
    /// leftovers); past it the oldest are deleted. Default 2 GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unposted_clip_quota: Option<u64>,
}

impl Default for File {
    fn default() -> File {
        File {
            name: "Neighbor".into(),
            listen: vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"),
            ],
            mdns: true,
            bootstrap: vec![],
            api: DEFAULT_API.into(),
            clip_policy: ClipPolicy::default(),
            mqtt: None,
            frigate: None,
            frigate_topic_prefix: None,
            auto_post: vec![],
            web_lan: None,
            unposted_clip_quota: None,
        }
    }
}

fn parse_addrs(path: &Path, what: &str, addrs: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    addrs
        .iter()
        .map(|a| {
            a.parse().map_err(|e| ConfigError::Invalid {
                path: path.display().to_string(),
                why: format!("{what} address {a:?}: {e}"),
            })
        })
        .collect()
}

/// Reads the file, writing the defaults there on first run.
fn read_file(data_dir: &Path) -> Result<File, ConfigError> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str::<File>(&text).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            why: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = File::default();
            write_file(data_dir, &file)?;
            Ok(file)
        }
        Err(source) => Err(ConfigError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

fn write_file(data_dir: &Path, file: &File) -> Result<(), ConfigError> {
    let path = data_dir.join(FILE);
    let io = |source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let text = toml::to_string(file).map_err(|e| ConfigError::Invalid {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    // Write beside, sync and rename: a crash leaves the old file or the new one, never
    // half. Owner-only: the file may hold the MQTT password.
    let temp = data_dir.join(format!("{FILE}.new"));
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        use std::io::Write;
        let mut out = options.open(&temp)?;
        out.write_all(format!("{HEADER}{text}").as_bytes())?;
        out.sync_all()?;
        std::fs::rename(&temp, &path)?;
        // The rename is durable once the directory is.
        #[cfg(unix)]
        std::fs::File::open(data_dir)?.sync_all()?;
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(io)
}

const HEADER: &str = "# Porchlight node settings. Every key is optional; see docs/operations.md.\n\
# Command-line flags (--listen, --api, --no-mdns) override these.\n\n";

/// Sets the display name in `porchlight.toml` (creating the file with defaults if needed).
pub fn set_name(data_dir: &Path, name: &str) -> Result<(), ConfigError> {
    let mut file = read_file(data_dir)?;
    file.name = name.to_owned();
    write_file(data_dir, &file)
}

/// Sets `clip_policy` in `porchlight.toml` (the page's settings), keeping every other key.
pub fn set_clip_policy(data_dir: &Path, policy: ClipPolicy) -> Result<(), ConfigError> {
    let mut file = read_file(data_dir)?;
    file.clip_policy = policy;
    write_file(data_dir, &file)
}

/// Reads `porchlight.toml` from `data_dir`, writing the defaults there on first run.
pub fn load(data_dir: &Path) -> Result<Config, ConfigError> {
    let path = data_dir.join(FILE);
    let file = read_file(data_dir)?;
    Ok(Config {
        data_dir: data_dir.to_path_buf(),
        listen: parse_addrs(&path, "listen", &file.listen)?,
        mdns: file.mdns,
        bootstrap: parse_addrs(&path, "bootstrap", &file.bootstrap)?,
        api: Some(file.api.parse().map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            why: format!("api address {:?}: {e}", file.api),
        })?),
        hub: crate::hub::Settings {
            unposted_clip_quota: file.unposted_clip_quota,
            ..crate::hub::Settings::from_file(
                file.mqtt.as_deref(),
                file.frigate.as_deref(),
                file.frigate_topic_prefix.as_deref(),
                &file.auto_post,
            )
            .map_err(|e| ConfigError::Invalid {
                path: path.display().to_string(),
                why: e.to_string(),
            })?
        },
        web_lan: match &file.web_lan {
            None => None,
            Some(a) => Some(a.parse().map_err(|e| ConfigError::Invalid {
                path: path.display().to_string(),
                why: format!("web_lan address {a:?}: {e} (like 192.168.1.20:8443)"),
            })?),
        },
        name: file.name,
        clip_policy: file.clip_policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_writes_defaults_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(dir.path()).unwrap();
        assert!(dir.path().join(FILE).exists());
        assert_eq!(config.listen.len(), 2);
        assert!(config.mdns);
        let again = load(dir.path()).unwrap();
        assert_eq!(again.listen, config.listen);
        set_name(dir.path(), "Alice").unwrap();
        let named = load(dir.path()).unwrap();
        assert_eq!(named.name, "Alice");
        assert_eq!(named.listen, config.listen);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_written_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load(dir.path()).unwrap();
        set_name(dir.path(), "Alice").unwrap();
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join(format!("{FILE}.new")).exists());
    }

    #[test]
    fn bad_file_is_a_clear_error_naming_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "listen = [\"not an address\"]\n").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an address"), "{err}");
        std::fs::write(dir.path().join(FILE), "colour = \"blue\"\n").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("colour"), "{err}");
        std::fs::write(dir.path().join(FILE), "mqtt = \"mqtts://broker\"\n").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("TLS"), "{err}");
    }

    #[test]
    fn the_lan_page_is_off_by_default_and_read_when_set() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap().web_lan, None);
        assert!(
            !std::fs::read_to_string(dir.path().join(FILE))
                .unwrap()
                .contains("web_lan"),
            "the default file does not mention it"
        );
        std::fs::write(dir.path().join(FILE), "web_lan = \"192.168.1.20:8443\"\n").unwrap();
        assert_eq!(
            load(dir.path()).unwrap().web_lan,
            Some("192.168.1.20:8443".parse().unwrap())
        );
        std::fs::write(dir.path().join(FILE), "web_lan = \"my-laptop\"\n").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("web_lan") && err.contains("my-laptop"),
            "{err}"
        );
    }

    #[test]
    fn hub_settings_are_read_and_survive_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            load(dir.path()).unwrap().hub.mqtt.is_none(),
            "off by default"
        );
        assert!(
            !std::fs::read_to_string(dir.path().join(FILE))
                .unwrap()
                .contains("mqtt"),
            "the default file does not mention the bridge"
        );
        std::fs::write(
            dir.path().join(FILE),
            "mqtt = \"mqtt://broker.lan\"\nfrigate = \"http://nvr.lan:5000\"\n\n\
             [[auto_post]]\ncamera = \"driveway\"\nlabel = \"car\"\ncategory = \"vehicle\"\n",
        )
        .unwrap();
        let hub = load(dir.path()).unwrap().hub;
        assert_eq!(hub.mqtt.unwrap().host, "broker.lan");
        assert_eq!(hub.frigate.unwrap().base(), "http://nvr.lan:5000");
        assert_eq!(hub.auto_post.len(), 1);
        set_name(dir.path(), "Alice").unwrap();
        set_clip_policy(dir.path(), ClipPolicy::Never).unwrap();
        let again = load(dir.path()).unwrap();
        assert_eq!(again.name, "Alice");
        assert_eq!(again.clip_policy, ClipPolicy::Never);
        assert_eq!(again.hub.auto_post.len(), 1);
        assert_eq!(again.hub.auto_post[0].label.as_deref(), Some("car"));
    }
}
