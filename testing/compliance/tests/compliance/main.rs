//! The datasource compliance suite: every behaviour of `kbsync_compliance::behaviours` for every
//! datasource, on SQLite and (when `KBSYNC_TEST_DATABASE_URL` is set) PostgreSQL. A test's path
//! names the datasource, the database and what it proves, e.g.
//! `gdrive::postgres::rename_and_move_apply_without_download`.

mod onedrive {
    kbsync_compliance::suite!(kbsync_compliance::OneDriveSubject);
}

mod gdrive {
    kbsync_compliance::suite!(kbsync_compliance::GDriveSubject);
}
