// `sqlx::migrate!` embeds the migrations directory at compile time, and cargo does not watch
// directories it was not told about: without this, a new migration file left a stale binary
// that never created its table.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
