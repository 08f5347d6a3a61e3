//! Starting, watching and cancelling runs: leases, the datasource of a knowledge base, and what
//! a finished run means for its schedule. (Skeleton: the interface the server and the scheduler
//! use; being implemented.)
