//! The JSON path (`routes[2].backends[0].weight`) at a byte offset of a JSON text.
//!
//! serde_json reports syntax errors by line and column; this turns the position into the path an
//! operator can find. (The `serde_path_to_error` crate does this during parsing but costs
//! ~70 KB of wasm, a quarter of the plugin's size budget; this scan runs only on errors.)

/// Path of the innermost value that contains `offset`, or was being read there.
pub fn path_at(json: &[u8], offset: usize) -> String {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    let end = offset.min(json.len());
    // Whether the next string in an object is a key.
    let mut expect_key = false;
    while i < end {
        match json[i] {
            b'{' => {
                stack.push(Frame::Object(None));
                expect_key = true;
            }
            b'[' => {
                stack.push(Frame::Array(0));
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(_)) => expect_key = true,
                None => {}
            },
            b':' => expect_key = false,
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    if json[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if expect_key {
                    if let Some(Frame::Object(k)) = stack.last_mut() {
                        let key = json.get(start..i.min(json.len())).unwrap_or_default();
                        *k = Some(String::from_utf8_lossy(key).into_owned());
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut path = String::new();
    for f in &stack {
        match f {
            Frame::Object(Some(k)) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Frame::Object(None) => {}
            Frame::Array(n) => {
                path.push('[');
                path.push_str(&n.to_string());
                path.push(']');
            }
        }
    }
    path
}

/// Byte offset of a 1-based line and column.
pub fn offset_of(json: &[u8], line: usize, column: usize) -> usize {
    let mut off = 0;
    for (n, l) in json.split(|&b| b == b'\n').enumerate() {
        if n + 1 == line {
            return off + column.min(l.len());
        }
        off += l.len() + 1;
    }
    json.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths() {
        let j = br#"{"routes": [{"name": "a"}, {"backends": [{"weight": "x"}]}]}"#;
        let at = j.windows(3).position(|w| w == b"\"x\"").unwrap() + 1;
        assert_eq!(path_at(j, at), "routes[1].backends[0].weight");
        assert_eq!(path_at(j, 0), "");
        let at = j.windows(6).position(|w| w == b"\"name\"").unwrap() + 3;
        assert_eq!(path_at(j, at), "routes[0].name");
    }

    #[test]
    fn offsets_follow_lines() {
        assert_eq!(offset_of(b"ab\ncd", 2, 1), 4);
        assert_eq!(offset_of(b"ab", 9, 1), 2);
    }
}
