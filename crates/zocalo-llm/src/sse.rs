//! SSE framing helpers shared by the providers. (Pending.)
