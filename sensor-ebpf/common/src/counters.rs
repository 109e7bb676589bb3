//! Counter enums shared by an XDP program and its loader, declared once:
//! each variant's map index and operator-facing name side by side, and
//! `COUNT`, `ALL`, `index()` and `name()` derived from them, so adding a
//! counter is one line (the per-CPU map is sized from `COUNT`).

/// Declares a `#[repr(u32)]` counter enum with dense indices:
///
/// ```ignore
/// counters! {
///     /// What the counters count.
///     pub enum Counter {
///         /// Frames seen.
///         Seen = 0 => "xdp_seen",
///     }
/// }
/// ```
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $index:literal => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $index, )+
        }

        impl $name {
            /// Number of counters (entries of the per-CPU map).
            pub const COUNT: u32 = [$($index),+].len() as u32;
            /// Every counter, in index order.
            pub const ALL: [$name; $name::COUNT as usize] = [$($name::$variant),+];

            /// Map index of this counter.
            #[inline(always)]
            pub const fn index(self) -> u32 {
                self as u32
            }

            /// Operator-facing name (stats line, stats JSON, reports).
            pub const fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )+
                }
            }
        }
    };
}
