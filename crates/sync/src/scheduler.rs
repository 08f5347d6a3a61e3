//! The scheduler loop: claims due knowledge bases from the database and hands them to the runner.
//! (Skeleton; being implemented.)
