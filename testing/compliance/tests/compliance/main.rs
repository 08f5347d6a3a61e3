//! The datasource compliance suite: every behaviour of `kbsync_compliance::behaviours` for every
//! datasource, on SQLite and (when `KBSYNC_TEST_DATABASE_URL` is set) PostgreSQL. A test's path
//! names the datasource, the database and what it proves, e.g.
//! `gdrive::postgres::rename_and_move_apply_without_download`.

mod onedrive {
    kbsync_compliance::suite!(kbsync_compliance::OneDriveSubject);
}

mod gdrive {
    // kbsync's connection manager does not yet ask Google for offline access the way Google takes
    // it: it adds the scope `offline_access` (Google answers `invalid_scope`) and leaves out
    // `access_type=offline` (no refresh token). Run these with `--ignored` once it does.
    kbsync_compliance::suite!(
        kbsync_compliance::GDriveSubject,
        oauth_ignored = "the connection manager sends offline_access, not access_type=offline, to Google"
    );
}
