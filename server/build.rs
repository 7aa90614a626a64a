//! Rebuilds the server when `www/` changes, so a release binary embeds the current client
//! (rust-embed reads the folder at compile time; files added later would otherwise be missed).

fn main() {
    println!("cargo:rerun-if-changed=../www");
}
