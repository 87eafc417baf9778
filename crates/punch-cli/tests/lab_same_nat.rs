//! Lab: two hosts behind one NAT connect over the private path (the public one would need
//! hairpinning, which Linux masquerade does not do).
mod lab;

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn same_port_restricted_cone_nat_uses_private_path() {
    lab::same_nat_matrix("port-restricted-cone");
}

#[test]
#[ignore = "namespace lab: needs root (run by ./run-tests as root)"]
fn same_symmetric_nat_uses_private_path() {
    lab::same_nat_matrix("symmetric");
}
