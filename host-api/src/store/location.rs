//! Where a store is: a sled directory (the embedded default) or a PostgreSQL database
//! shared by several hosts.

use std::path::PathBuf;

/// A store's location, as `--store` / `LATCHKEY_STORE` names it.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A sled directory (one process at a time).
    Dir(PathBuf),
    /// A PostgreSQL URL (`postgres://user:password@host:port/db`); several hosts may share it.
    Postgres(String),
}

impl Location {
    /// `postgres://…` or `postgresql://…` is a database; anything else a directory.
    pub fn parse(text: &str) -> Location {
        if super::postgres::is_postgres_url(text) {
            Location::Postgres(text.to_owned())
        } else {
            Location::Dir(PathBuf::from(text))
        }
    }

    /// The location as it may be printed: a directory, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            Location::Dir(d) => d.display().to_string(),
            Location::Postgres(url) => super::postgres::shown_url(url),
        }
    }

    /// The directory, for a sled store.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Location::Dir(d) => Some(d),
            Location::Postgres(_) => None,
        }
    }
}

impl Location {
    /// The backend at this location; a directory is created (0700) if `create`.
    pub(crate) fn backend(&self, create: bool) -> Result<Box<dyn super::Backend>, super::StoreError> {
        match self {
            Location::Dir(dir) => {
                super::check_private_dir(dir)?;
                if create {
                    super::create_private_dir(dir).map_err(|source| super::BackendError::IoAt {
                        action: "creating",
                        path: dir.clone(),
                        source,
                    })?;
                } else if !dir.join("conf").exists() {
                    return Err(super::StoreError::NotInitialized { path: self.shown() });
                }
                Ok(Box::new(super::SledBackend::open(dir)?))
            }
            Location::Postgres(url) => Ok(Box::new(super::PostgresBackend::open(url)?)),
        }
    }
}

/// Never prints a database password.
impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({})", self.shown())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl std::str::FromStr for Location {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Location::parse(s))
    }
}
