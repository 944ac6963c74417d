//! Quality of service on the PMD threads: port policers (three-colour
//! markers that drop red frames) on what a port receives and sends.

pub mod policer;
