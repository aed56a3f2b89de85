//! Tests of the configuration module: ranges, strict parsing, defaults, secrets kept out of output.
