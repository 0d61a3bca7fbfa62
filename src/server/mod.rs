//! The TCP server (to come).
