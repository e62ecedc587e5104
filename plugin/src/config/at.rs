//! JSON paths for error messages (`routes[3].canaries[0].when[1]`), built only when an error
//! names one: validating a large config would otherwise format a path string per field.

use std::fmt;

/// A place in the config document, as a chain of borrowed parents.
#[derive(Debug, Clone, Copy)]
pub enum At<'a> {
    Root,
    Field(&'a At<'a>, &'static str),
    Index(&'a At<'a>, usize),
}

impl<'a> At<'a> {
    /// `self.name` (a dotted `name` is several fields at once).
    pub fn field(&'a self, name: &'static str) -> At<'a> {
        At::Field(self, name)
    }

    /// `self[i]`.
    pub fn index(&'a self, i: usize) -> At<'a> {
        At::Index(self, i)
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => Ok(()),
            At::Field(At::Root, name) => f.write_str(name),
            At::Field(parent, name) => write!(f, "{parent}.{name}"),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

impl From<At<'_>> for String {
    fn from(at: At<'_>) -> String {
        at.to_string()
    }
}

impl From<&At<'_>> for String {
    fn from(at: &At<'_>) -> String {
        at.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_the_document() {
        let routes = At::Root.field("routes");
        let r = routes.index(3);
        let canaries = r.field("canaries");
        let c = canaries.index(0);
        assert_eq!(
            c.field("when").index(1).to_string(),
            "routes[3].canaries[0].when[1]"
        );
        assert_eq!(
            r.field("failback.hold_seconds").to_string(),
            "routes[3].failback.hold_seconds"
        );
        assert_eq!(At::Root.field("version").to_string(), "version");
        assert_eq!(At::Root.to_string(), "");
    }
}
