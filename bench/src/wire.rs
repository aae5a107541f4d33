//! Decoding what arrives on the wire, for the endpoint and its state
//! bucket alike (a leaf: both use it).

/// `%XX` escapes decoded (S3 keys and query values: a `+` is a plus).
pub fn percent_decode(s: &str) -> String {
    form_decode(&s.replace('+', "%2B"))
}

/// A form field decoded: `%XX` escapes, and `+` is a space.
pub fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
