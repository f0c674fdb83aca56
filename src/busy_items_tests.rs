use super::*;

#[test]
fn an_id_round_trips_and_one_too_long_for_a_slot_is_left_out() {
    let id = "eVBnVMp7zdTJLkRNr33Rs6zr7KNJqBFL9DrE6";
    assert_eq!(decode(&encode(id).unwrap()), id);
    let longest = "x".repeat(ID_BYTES);
    assert_eq!(decode(&encode(&longest).unwrap()), longest);
    assert!(encode(&"x".repeat(ID_BYTES + 1)).is_none());
    assert!(encode("").is_none());
}
