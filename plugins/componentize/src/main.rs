//! `componentize IN.wasm OUT.wasm`: wrap a core module built by wit-bindgen (which embeds the
//! world it implements) into a validated component that the host can load.

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: componentize IN.wasm OUT.wasm");
    };
    let module = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .with_context(|| format!("{input} is not a wit-bindgen module"))?
        .validate(true)
        .encode()
        .with_context(|| format!("encoding {input} as a component"))?;
    // Write then rename, so a watching host never reads a half-written plugin.
    let tmp = format!("{output}.tmp");
    std::fs::write(&tmp, &component).with_context(|| format!("writing {tmp}"))?;
    std::fs::rename(&tmp, output).with_context(|| format!("renaming {tmp} to {output}"))?;
    Ok(())
}
