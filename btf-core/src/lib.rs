//! BTF and BTF.ext parsing, CO-RE relocation (issue 4; not implemented yet).
