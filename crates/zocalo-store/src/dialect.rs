//! [`Dialects`]: one statement in both SQL dialects, for the few statements whose text must
//! differ between SQLite and PostgreSQL (`RETURNING` shapes, `FOR UPDATE SKIP LOCKED`, ...).
//! The [`dialects!`](crate::dialects) macro reads the two texts from `sql/sqlite/FILE` and
//! `sql/postgres/FILE` next to the code that runs them.

use crate::{Backend, Pool, Store};

/// One statement in both dialects (the same text where they agree).
#[derive(Clone, Copy, Debug)]
pub struct Dialects {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl Dialects {
    /// The text for `backend`.
    pub fn for_backend(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }

    /// The text for the backend of `pool`.
    pub fn for_pool(&self, pool: &Pool) -> &'static str {
        match pool {
            Pool::Sqlite(_) => self.sqlite,
            Pool::Postgres(_) => self.postgres,
        }
    }

    /// The text for the backend of `store`.
    pub fn for_store(&self, store: &Store) -> &'static str {
        self.for_backend(store.backend())
    }
}

/// `dialects!("claim.sql")`: [`Dialects`] from `sql/sqlite/claim.sql` and
/// `sql/postgres/claim.sql`, relative to the file that uses it.
#[macro_export]
macro_rules! dialects {
    ($file:literal) => {
        $crate::Dialects {
            sqlite: include_str!(concat!("sql/sqlite/", $file)),
            postgres: include_str!(concat!("sql/postgres/", $file)),
        }
    };
}
