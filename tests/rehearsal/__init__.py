"""The rehearsal of the paper profile: a loopback Hugging Face Hub serving locally built stand-ins of the paper's
repositories, the builders of those stand-ins, and the guard that keeps every connection on the loopback."""
