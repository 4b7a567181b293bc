//! Byte comparison for plugins, eight bytes at a time.
//!
//! Comparing two strings (`match key { "store_id" => .. }`, a hash map finding its key) ends in
//! a call of `memcmp` or `bcmp`. On wasm32 these come from `compiler_builtins`, which compares
//! one byte per step; natively libc's vectorised ones run. A profile of the sales cleaner
//! (`CHAIN_PROFILE=stage=cleaner`) had `memcmp` at 5% of its time. These definitions replace
//! the byte loops in a component (the linker takes them before the library's): whole words
//! while eight bytes are left, then bytes. The functions are generic so tests run them natively.

/// Whether `a` and `b` differ (`bcmp`'s contract: 0 when equal, nonzero otherwise).
///
/// # Safety
/// `a` and `b` are valid for reads of `n` bytes.
pub unsafe fn differ(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, within both ranges; unaligned reads.
        let (x, y) = unsafe { (word(a, i), word(b, i)) };
        if x != y {
            return 1;
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        if unsafe { *a.add(i) != *b.add(i) } {
            return 1;
        }
        i += 1;
    }
    0
}

/// `memcmp`: the sign of the first differing byte of `a` less that of `b`, as unsigned bytes.
///
/// # Safety
/// `a` and `b` are valid for reads of `n` bytes.
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: as in `differ`.
        let (x, y) = unsafe { (word(a, i), word(b, i)) };
        if x != y {
            // Byte-swapped, the first byte in memory is the most significant.
            return if x.swap_bytes() < y.swap_bytes() {
                -1
            } else {
                1
            };
        }
        i += 8;
    }
    while i < n {
        // SAFETY: i < n.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// The eight bytes at `p + i`, little-endian.
unsafe fn word(p: *const u8, i: usize) -> u64 {
    // SAFETY: the caller keeps p + i .. p + i + 8 in bounds.
    u64::from_le(unsafe { p.add(i).cast::<u64>().read_unaligned() })
}

#[cfg(all(target_family = "wasm", not(test)))]
mod symbols {
    /// # Safety
    /// As C's `bcmp`.
    #[no_mangle]
    pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: the caller's contract is ours.
        unsafe { super::differ(a, b, n) }
    }

    /// # Safety
    /// As C's `memcmp`.
    #[no_mangle]
    pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: the caller's contract is ours.
        unsafe { super::compare(a, b, n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_slice_comparison() {
        let base: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37)).collect();
        for n in 0..=base.len() {
            for at in 0..n {
                for delta in [1u8, 0x80, 0xff] {
                    let mut other = base.clone();
                    other[at] = other[at].wrapping_add(delta);
                    let (a, b) = (&base[..n], &other[..n]);
                    // SAFETY: both slices are n bytes long.
                    let (d, c) = unsafe {
                        (
                            differ(a.as_ptr(), b.as_ptr(), n),
                            compare(a.as_ptr(), b.as_ptr(), n),
                        )
                    };
                    assert_ne!(d, 0);
                    assert_eq!(c.signum(), a.cmp(b) as i32, "n {n} at {at} delta {delta}");
                    // SAFETY: as above.
                    let back = unsafe { compare(b.as_ptr(), a.as_ptr(), n) };
                    assert_eq!(back.signum(), -c.signum());
                }
            }
            // SAFETY: as above.
            unsafe {
                assert_eq!(differ(base.as_ptr(), base.as_ptr(), n), 0);
                assert_eq!(compare(base.as_ptr(), base.as_ptr(), n), 0);
            }
        }
    }
}
