"""Read the gradient-flow SVG the way a person reads it: by node, edge and role."""

import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"


def own_text(element):
    """An element's text without its <title> tooltip."""
    return (element.text or "") + "".join(child.tail or "" for child in element)


def node_texts(svg, node):
    """{role: text} for the box of the node labelled `node` (e.g. 'value': 'value 3').

    Lines of one role (a message wrapped over several lines) are joined by spaces.
    """
    root = ET.fromstring(svg)
    for group in root.iter(f"{SVG}g"):
        if group.get("data-node") == node:
            texts = {}
            for text in group.iter(f"{SVG}text"):
                role = text.get("data-role")
                texts[role] = f"{texts[role]} {own_text(text)}" if role in texts else own_text(text)
            return texts
    raise KeyError(f"no node {node!r} in the picture")


def edge_text(svg, edge):
    """The gradient label of the edge 'a->b' ('' when the edge has none)."""
    root = ET.fromstring(svg)
    for group in root.iter(f"{SVG}g"):
        if group.get("data-edge") == edge:
            labels = [own_text(t) for t in group.iter(f"{SVG}text") if t.get("data-role") == "edge-grad"]
            return labels[0] if labels else ""
    raise KeyError(f"no edge {edge!r} in the picture")


def caption(svg):
    root = ET.fromstring(svg)
    texts = [own_text(t) for t in root.iter(f"{SVG}text") if t.get("data-role") == "caption"]
    return texts[0] if texts else ""
