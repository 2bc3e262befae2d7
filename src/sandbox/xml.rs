//! Just enough XML for a SOAP envelope: a tree read with quick-xml's
//! namespace-aware reader, names resolved to namespace URIs (so any prefix
//! works) and character data unescaped.

use quick_xml::{
    NsReader, XmlVersion,
    escape::resolve_predefined_entity,
    events::{BytesStart, Event},
    name::ResolveResult,
};

#[derive(Debug)]
pub(crate) struct Element {
    namespace: Option<String>,
    local: String,
    /// The name as written, for messages.
    pub qname: String,
    attributes: Vec<Attribute>,
    pub children: Vec<Element>,
    /// The element's own character data, unescaped (CDATA included).
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
        self.namespace.as_deref() == Some(namespace) && self.local == local
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

    pub(crate) fn child(&self, namespace: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(namespace, local))
    }
}

/// Parses a whole document into its root element. DTDs are refused (SOAP
/// forbids them), as are undefined entities and undeclared prefixes.
pub(crate) fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(xml);
    let mut open: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
        let namespace = namespace_uri(resolved)?;
        match event {
            Event::Start(start) => open.push(element(&reader, namespace, &start)?),
            Event::Empty(start) => {
                let empty = element(&reader, namespace, &start)?;
                close(empty, &mut open, &mut root)?;
            }
            Event::End(_) => {
                let done = open.pop().ok_or("an end tag without a start tag")?;
                close(done, &mut open, &mut root)?;
            }
            Event::Text(text) => append(&mut open, &text.xml10_content())?,
            Event::CData(cdata) => append(&mut open, &cdata.into_inner())?,
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(character) => character.to_string(),
                    None => resolve_predefined_entity(&reference)
                        .ok_or_else(|| format!("undefined entity &{};", &*reference))?
                        .to_owned(),
                };
                append(&mut open, &resolved)?;
            }
            Event::DocType(_) => return Err("a document type declaration is not allowed".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(unclosed) = open.last() {
        return Err(format!("<{}> is not closed", unclosed.qname));
    }
    root.ok_or_else(|| "no root element".into())
}

fn namespace_uri(resolved: ResolveResult<'_>) -> Result<Option<String>, String> {
    match resolved {
        ResolveResult::Bound(namespace) => Ok(Some(namespace.0.to_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(format!("undeclared namespace prefix {prefix}")),
    }
}

fn element(
    reader: &NsReader<&[u8]>,
    namespace: Option<String>,
    start: &BytesStart<'_>,
) -> Result<Element, String> {
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| e.to_string())?;
        if attribute.key.as_namespace_binding().is_some() {
            continue;
        }
        let (resolved, local) = reader.resolver().resolve_attribute(attribute.key);
        attributes.push(Attribute {
            namespace: namespace_uri(resolved)?,
            local: local.as_ref().to_owned(),
            value: attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| e.to_string())?
                .into_owned(),
        });
    }
    Ok(Element {
        namespace,
        local: start.local_name().as_ref().to_owned(),
        qname: start.name().as_ref().to_owned(),
        attributes,
        children: Vec::new(),
        text: String::new(),
    })
}

fn close(element: Element, open: &mut [Element], root: &mut Option<Element>) -> Result<(), String> {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}

fn append(open: &mut [Element], text: &str) -> Result<(), String> {
    match open.last_mut() {
        Some(element) => element.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err("text outside the root element".into()),
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
            </e:Root>"#,
        )
        .expect("well-formed");
        assert!(root.is("urn:one", "Root"));
        assert_eq!(root.attribute(Some("urn:one"), "flag"), Some("a & b"));
        let name = root
            .child("urn:default", "Name")
            .expect("default namespace");
        assert_eq!(name.text, "R&D <Europe> ]]> A<raw>");
        let other = root.child("urn:one", "Other").expect("rebound prefix");
        assert_eq!(other.attribute(None, "plain"), Some("1"));
        assert_eq!(other.qname, "x:Other");
    }

    #[test]
    fn refuses_what_is_not_plain_well_formed_xml() {
        for bad in [
            "<a><b></a>",
            "<a>",
            "<a/><b/>",
            "<p:a/>",
            "<a>&nbsp;</a>",
            "<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
            "text<a/>",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} is refused");
        }
    }
}
