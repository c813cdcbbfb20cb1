//! BOLT 3 test vectors as Rust tables (Appendices B to F and the fee
//! example). Each binary uses only some of them.
#![allow(dead_code)]

pub mod appendix_b;
pub mod appendix_c;
pub mod appendix_d;
pub mod appendix_e;
pub mod appendix_f;
pub mod fee_example;
