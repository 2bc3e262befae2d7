//! The one XML reader, for SOAP: the Workday connector reads replies with
//! it, the sandbox reads requests. A whole document becomes a tree, read
//! with quick-xml's namespace-aware reader: names are resolved to namespace
//! URIs (so any prefix works) and character data is unescaped.
//!
//! Only plain, well-formed XML is read. A DTD is refused before anything in
//! it is expanded or fetched (billion laughs, external entities), and so is
//! any entity but the five predefined ones and character references.

use quick_xml::{
    NsReader, XmlVersion,
    escape::resolve_predefined_entity,
    events::{BytesStart, Event},
    name::ResolveResult,
};

/// Deep enough for any SOAP message we expect; the limit keeps a hostile
/// document from building a tree so deep that dropping it overflows the
/// stack.
const MAX_DEPTH: usize = 64;

/// Why a document was refused; the text names the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct XmlError(String);

impl XmlError {
    fn new(problem: impl std::fmt::Display) -> Self {
        Self(problem.to_string())
    }
}

/// An element with its name resolved.
#[derive(Debug)]
pub(crate) struct Element {
    namespace: Option<String>,
    local: String,
    /// The name as written, prefix included, for messages.
    pub qname: String,
    /// Without the namespace declarations (`xmlns`, `xmlns:*`).
    attributes: Vec<Attribute>,
    pub children: Vec<Element>,
    /// The concatenation of the element's own character data, unescaped
    /// (CDATA included).
    pub text: String,
}

#[derive(Debug)]
struct Attribute {
    namespace: Option<String>,
    local: String,
    value: String,
}

impl Element {
    pub(crate) fn is(&self, namespace: &str, local: &str) -> bool {
        self.in_namespace(namespace) && self.local == local
    }

    pub(crate) fn local_name(&self) -> &str {
        &self.local
    }

    pub(crate) fn in_namespace(&self, namespace: &str) -> bool {
        self.namespace.as_deref() == Some(namespace)
    }

    /// An attribute by namespace URI (`None`: unqualified) and local name.
    pub(crate) fn attribute(&self, namespace: Option<&str>, local: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.namespace.as_deref() == namespace && a.local == local)
            .map(|a| a.value.as_str())
    }

    /// The first child `{namespace}local`.
    pub(crate) fn child(&self, namespace: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(namespace, local))
    }

    /// Every child `{namespace}local`, in document order.
    pub(crate) fn children_named<'a>(
        &'a self,
        namespace: &'a str,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.is(namespace, local))
    }

    /// The first child with this local name, in whatever namespace.
    pub(crate) fn child_any_ns(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local == local)
    }
}

/// Parses a whole document into its root element, refusing anything not
/// well-formed (mismatched or unclosed tags, undeclared prefixes, unknown
/// entities, content outside the single root element), a DTD, and elements
/// nested deeper than [`MAX_DEPTH`].
pub(crate) fn parse(xml: &str) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_str(xml);
    let mut open: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(XmlError::new)?;
        let namespace = namespace_uri(resolved)?;
        let (start, empty) = match event {
            Event::Start(start) => (start, false),
            Event::Empty(start) => (start, true),
            Event::End(_) => {
                let done = open
                    .pop()
                    .ok_or_else(|| XmlError::new("an end tag without a start tag"))?;
                close(done, &mut open, &mut root);
                continue;
            }
            Event::Text(text) => {
                append(&mut open, &text.xml10_content())?;
                continue;
            }
            Event::CData(data) => {
                append(&mut open, &data.xml10_content())?;
                continue;
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(XmlError::new)? {
                    Some(character) => character.to_string(),
                    None => resolve_predefined_entity(&reference)
                        .ok_or_else(|| XmlError(format!("unknown entity &{};", &*reference)))?
                        .to_owned(),
                };
                append(&mut open, &resolved)?;
                continue;
            }
            Event::DocType(_) => return Err(XmlError::new("a DTD is not allowed")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => continue,
            Event::Eof => break,
        };
        // Checked before the element is read, so neither a second root nor
        // one level too many is ever built.
        if open.is_empty() && root.is_some() {
            return Err(XmlError::new("more than one root element"));
        }
        if open.len() >= MAX_DEPTH {
            return Err(XmlError::new("elements nested too deeply"));
        }
        let element = element(&reader, namespace, &start)?;
        if empty {
            close(element, &mut open, &mut root);
        } else {
            open.push(element);
        }
    }
    if let Some(unclosed) = open.last() {
        return Err(XmlError(format!("<{}> is not closed", unclosed.qname)));
    }
    root.ok_or_else(|| XmlError::new("no root element"))
}

fn namespace_uri(resolved: ResolveResult<'_>) -> Result<Option<String>, XmlError> {
    match resolved {
        ResolveResult::Bound(namespace) => Ok(Some(namespace.into_inner().to_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(XmlError(format!("undeclared prefix {prefix}"))),
    }
}

fn element(
    reader: &NsReader<&[u8]>,
    namespace: Option<String>,
    start: &BytesStart<'_>,
) -> Result<Element, XmlError> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(XmlError::new)?;
        if attribute.key.as_namespace_binding().is_some() {
            continue;
        }
        let (resolved, local) = reader.resolver().resolve_attribute(attribute.key);
        attributes.push(Attribute {
            namespace: namespace_uri(resolved)?,
            local: local.into_inner().to_owned(),
            value: attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(XmlError::new)?
                .into_owned(),
        });
    }
    Ok(Element {
        namespace,
        local: start.local_name().into_inner().to_owned(),
        qname: start.name().into_inner().to_owned(),
        attributes,
        children: Vec::new(),
        text: String::new(),
    })
}

/// A finished element goes to its parent, or becomes the root (a second
/// root is refused when it starts).
fn close(element: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// Text inside the root belongs to the innermost open element; outside it,
/// only whitespace may appear.
fn append(open: &mut [Element], text: &str) -> Result<(), XmlError> {
    match open.last_mut() {
        Some(element) => element.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(XmlError::new("text outside the root element")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_namespaces_whatever_the_prefix_and_unescapes_text() {
        let root = parse(
            r#"<?xml version="1.0"?>
            <e:Root xmlns:e="urn:one" xmlns="urn:default" e:flag="a &amp; b">
              <Name>R&amp;D &lt;Europe&gt; ]]&gt; &#x41;<![CDATA[<raw>]]></Name>
              <x:Other xmlns:x="urn:one" plain="1"/>
              <x:Other xmlns:x="urn:one"/>
            </e:Root>"#,
        )
        .expect("well-formed");
        assert!(root.is("urn:one", "Root"));
        assert_eq!(root.local_name(), "Root");
        assert_eq!(root.qname, "e:Root");
        assert_eq!(root.attribute(Some("urn:one"), "flag"), Some("a & b"));
        assert_eq!(root.attribute(None, "flag"), None);
        assert_eq!(
            root.attribute(None, "xmlns"),
            None,
            "declarations are no attributes"
        );
        let name = root
            .child("urn:default", "Name")
            .expect("default namespace");
        assert_eq!(name.text, "R&D <Europe> ]]> A<raw>");
        assert!(name.in_namespace("urn:default"));
        let other = root.child("urn:one", "Other").expect("rebound prefix");
        assert_eq!(other.attribute(None, "plain"), Some("1"));
        assert_eq!(other.qname, "x:Other");
        assert_eq!(root.children_named("urn:one", "Other").count(), 2);
        assert_eq!(
            root.child_any_ns("Other").map(|o| o.qname.as_str()),
            Some("x:Other")
        );
        assert!(root.child("urn:default", "Other").is_none());
    }

    #[test]
    fn line_ends_are_normalised_but_escaped_carriage_returns_kept() {
        let root = parse("<a>x\r\ny<![CDATA[\r\n]]>&#xD;</a>").expect("well-formed");
        assert_eq!(root.text, "x\ny\n\r");
    }

    #[test]
    fn refuses_what_is_not_plain_well_formed_xml_and_says_why() {
        let cases = [
            ("", "no root element"),
            ("not XML at all", "text outside the root element"),
            (r#"{"error": "json"}"#, "text outside the root element"),
            ("text<a/>", "text outside the root element"),
            ("<a/>text", "text outside the root element"),
            ("<a><b></a>", "</a>"),
            ("<a><b></b>", "<a> is not closed"),
            ("<a/><b/>", "more than one root element"),
            ("<p:a/>", "undeclared prefix p"),
            ("<a p:x='1'/>", "undeclared prefix p"),
            ("<a>&bogus;</a>", "unknown entity &bogus;"),
            ("<a>&nbsp;</a>", "unknown entity &nbsp;"),
            ("<a x='&bogus;'/>", "unrecognized entity `bogus`"),
            // Refused before anything in it is expanded or fetched.
            (
                r#"<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><a>&lol2;</a>"#,
                "a DTD is not allowed",
            ),
            (
                r#"<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/hostname">]><a>&xxe;</a>"#,
                "a DTD is not allowed",
            ),
        ];
        for (bad, why) in cases {
            let error = parse(bad).expect_err(bad).to_string();
            assert!(error.contains(why), "{bad:?} gave {error:?}");
        }
    }

    #[test]
    fn nesting_is_limited() {
        let nested = |depth: usize| "<a>".repeat(depth) + &"</a>".repeat(depth);
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        let error = parse(&nested(MAX_DEPTH + 1))
            .expect_err("too deep")
            .to_string();
        assert!(error.contains("nested too deeply"), "{error}");
        let error = parse(&nested(100)).expect_err("too deep").to_string();
        assert!(error.contains("nested too deeply"), "{error}");
    }
}
