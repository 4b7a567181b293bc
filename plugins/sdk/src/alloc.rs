//! The plugins' allocator: a size-class cache in front of a general allocator (talc in a
//! component).
//!
//! A plugin churns through small blocks: every string the host copies in is a separate
//! allocation (the canonical ABI calls `cabi_realloc` once per string), and every string it hands
//! back is freed after the host has copied it out. A sale carries six strings, so a batch of 1024
//! sales is about 6,000 small allocations and as many frees, per stage. A general allocator
//! searches bins and coalesces neighbours on each of them; here a freed block of up to
//! [`MAX_CACHED`] bytes goes onto a free list for its size class and the next allocation of that
//! class pops it: a few instructions each way.
//!
//! Bounds: each class keeps at most [`CACHE_BYTES_PER_CLASS`] bytes of free blocks and returns
//! the rest to the inner allocator, so the cache holds at most `32 x 512 KiB` = 16 MiB that a
//! plugin is not using (counted against its memory limit like any other memory). Larger or
//! over-aligned blocks go straight to the inner allocator.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this; it is also the alignment every cached block has.
pub const GRAIN: usize = 16;
/// The largest block the cache handles.
pub const MAX_CACHED: usize = 512;
const CLASSES: usize = MAX_CACHED / GRAIN;
/// Free bytes one class keeps before handing blocks back to the inner allocator.
pub const CACHE_BYTES_PER_CLASS: usize = 512 << 10;

/// A free block's first word points to the next free block of its class.
struct Lists {
    head: [*mut u8; CLASSES],
    len: [usize; CLASSES],
}

/// A size-class cache over `A`. Not thread-safe: a component instance is single-threaded, and
/// the only `Sync` implementation is for that target (tests use an instance on one thread).
pub struct SizeClasses<A> {
    inner: A,
    lists: UnsafeCell<Lists>,
}

// SAFETY: WebAssembly without the atomics feature runs one thread per instance, so the lists are
// never touched concurrently.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for SizeClasses<A> {}

impl<A> SizeClasses<A> {
    pub const fn new(inner: A) -> Self {
        SizeClasses {
            inner,
            lists: UnsafeCell::new(Lists {
                head: [ptr::null_mut(); CLASSES],
                len: [0; CLASSES],
            }),
        }
    }

    /// Free blocks cached per class (for tests and diagnostics).
    pub fn cached(&self) -> [usize; CLASSES] {
        // SAFETY: single-threaded (see the type's documentation); a plain read.
        unsafe { (*self.lists.get()).len }
    }
}

/// The class of a layout the cache handles, or `None`.
fn class(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_CACHED || layout.align() > GRAIN {
        return None;
    }
    Some(layout.size().max(1).div_ceil(GRAIN) - 1)
}

/// The layout every block of class `c` is allocated with from the inner allocator.
fn class_layout(c: usize) -> Layout {
    // SAFETY: (c + 1) * GRAIN <= MAX_CACHED, a power-of-two alignment, no overflow.
    unsafe { Layout::from_size_align_unchecked((c + 1) * GRAIN, GRAIN) }
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for SizeClasses<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.inner.alloc(layout) };
        };
        // SAFETY: single-threaded; `head[c]`, when not null, is a free block of class `c` whose
        // first word (aligned: blocks are GRAIN-aligned) holds the next one.
        unsafe {
            let lists = &mut *self.lists.get();
            let block = lists.head[c];
            if block.is_null() {
                return self.inner.alloc(class_layout(c));
            }
            lists.head[c] = *(block as *mut *mut u8);
            lists.len[c] -= 1;
            block
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            // SAFETY: a block of this layout came from the inner allocator.
            return unsafe { self.inner.dealloc(block, layout) };
        };
        // SAFETY: `block` is a live block of class `c` (allocated above with `class_layout(c)`,
        // at least GRAIN bytes and GRAIN-aligned), now owned by the cache.
        unsafe {
            let lists = &mut *self.lists.get();
            if lists.len[c] * (c + 1) * GRAIN >= CACHE_BYTES_PER_CLASS {
                return self.inner.dealloc(block, class_layout(c));
            }
            *(block as *mut *mut u8) = lists.head[c];
            lists.head[c] = block;
            lists.len[c] += 1;
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // Same class: the block already has room.
            (Some(a), Some(b)) if a == b => block,
            // Both from the inner allocator: let it grow in place when it can.
            // SAFETY: forwarded with the caller's guarantees.
            (None, None) => unsafe { self.inner.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a fresh block of the new layout; copy what fits, free the old one.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::sync::atomic::{AtomicIsize, Ordering};

    /// The system allocator, counting live blocks.
    #[derive(Default)]
    struct Counting(AtomicIsize);

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.0.fetch_add(1, Ordering::Relaxed);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
            self.0.fetch_sub(1, Ordering::Relaxed);
            unsafe { System.dealloc(block, layout) }
        }
    }

    fn live(a: &SizeClasses<Counting>) -> isize {
        a.inner.0.load(Ordering::Relaxed)
    }

    #[test]
    fn a_freed_small_block_is_reused_by_the_next_allocation_of_its_class() {
        let a = SizeClasses::new(Counting::default());
        let l = Layout::from_size_align(11, 1).unwrap();
        unsafe {
            let x = a.alloc(l);
            x.write_bytes(7, 11);
            a.dealloc(x, l);
            assert_eq!(a.cached()[0], 1);
            // 16 bytes is the same class as 11; 17 is not.
            let y = a.alloc(Layout::from_size_align(16, 8).unwrap());
            assert_eq!(x, y, "the cached block comes back");
            let z = a.alloc(Layout::from_size_align(17, 1).unwrap());
            assert_ne!(z, y);
            assert_eq!(z as usize % GRAIN, 0);
            assert_eq!(live(&a), 2);
            a.dealloc(y, Layout::from_size_align(16, 8).unwrap());
            a.dealloc(z, Layout::from_size_align(17, 1).unwrap());
            assert_eq!((a.cached()[0], a.cached()[1]), (1, 1));
        }
    }

    #[test]
    fn large_and_over_aligned_blocks_bypass_the_cache() {
        let a = SizeClasses::new(Counting::default());
        unsafe {
            for l in [
                Layout::from_size_align(MAX_CACHED + 1, 8).unwrap(),
                Layout::from_size_align(32, 64).unwrap(),
            ] {
                let x = a.alloc(l);
                assert_eq!(x as usize % l.align(), 0);
                a.dealloc(x, l);
            }
        }
        assert_eq!(live(&a), 0);
        assert_eq!(a.cached().iter().sum::<usize>(), 0);
    }

    #[test]
    fn each_class_caches_a_bounded_number_of_bytes() {
        let a = SizeClasses::new(Counting::default());
        let l = Layout::from_size_align(GRAIN, 1).unwrap();
        let n = CACHE_BYTES_PER_CLASS / GRAIN + 100;
        unsafe {
            let blocks: Vec<_> = (0..n).map(|_| a.alloc(l)).collect();
            for b in blocks {
                a.dealloc(b, l);
            }
        }
        assert_eq!(a.cached()[0], CACHE_BYTES_PER_CLASS / GRAIN);
        assert_eq!(live(&a), (CACHE_BYTES_PER_CLASS / GRAIN) as isize);
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_into_the_inner_allocator() {
        let a = SizeClasses::new(Counting::default());
        unsafe {
            let mut l = Layout::from_size_align(5, 1).unwrap();
            let mut p = a.alloc(l);
            p.copy_from_nonoverlapping(b"hello".as_ptr(), 5);
            for size in [14, 40, 600, 3000, 100, 3] {
                let q = a.realloc(p, l, size);
                assert!(!q.is_null());
                assert_eq!(std::slice::from_raw_parts(q, 3), b"hel", "to {size}");
                let same = class(Layout::from_size_align(size, 1).unwrap());
                if class(l).is_some() && class(l) == same {
                    assert_eq!(p, q, "same class stays in place");
                }
                (p, l) = (q, Layout::from_size_align(size, 1).unwrap());
            }
            a.dealloc(p, l);
        }
        // Every block is either freed to the inner allocator or held by the cache.
        assert_eq!(live(&a), a.cached().iter().sum::<usize>() as isize);
    }
}
