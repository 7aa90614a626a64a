//! Placeholder until the encrypt + decrypt benchmark lands.

fn main() {}
