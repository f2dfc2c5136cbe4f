//! The fake server itself delivers what the provider tests rely on: chunks as split, cuts as
//! broken connections.

use futures::StreamExt;
use zocalo_testkit::fake::{FakeServer, Reply};

#[tokio::test]
async fn split_bodies_arrive_in_those_chunks() {
    let server = FakeServer::start().await;
    server.push(Reply::sse("abcdefghij").split_at(&[3, 7]));
    let resp = reqwest::get(server.url()).await.unwrap();
    let chunks: Vec<String> = resp
        .bytes_stream()
        .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
        .collect()
        .await;
    assert_eq!(chunks.concat(), "abcdefghij");
    assert_eq!(chunks, vec!["abc", "defg", "hij"]);
}

#[tokio::test]
async fn cut_after_breaks_the_connection() {
    let server = FakeServer::start().await;
    server.push(Reply::sse("abcdefghij").cut_after(4));
    let resp = reqwest::get(server.url()).await.unwrap();
    let items: Vec<_> = resp.bytes_stream().collect().await;
    let got: Vec<u8> = items
        .iter()
        .filter_map(|i| i.as_ref().ok())
        .flat_map(|b| b.to_vec())
        .collect();
    assert_eq!(got, b"abcd");
    assert!(
        items.last().unwrap().is_err(),
        "the body must end in an error, not cleanly"
    );
}
