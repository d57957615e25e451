//! libuserbpf_agent.so: hooks inside target processes (issue 6; not implemented yet).
