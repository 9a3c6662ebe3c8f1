//! Seccomp filters laid out as a search tree over system call numbers.
//!
//! seccompiler compiles a filter as one linear chain: the system call number
//! is compared with every listed call in turn. Loading such a filter costs
//! the kernel time in proportion to that chain for every possible call
//! number: it emulates the filter once per number (about 460 on x86_64) to
//! build its cache of always-allowed calls, with interrupts off, before the
//! thread may go on. On the development machines that was about half of the
//! 0.13-0.17 ms each thread spent in seccomp(2) at start-up.
//!
//! [`tree_program`] keeps seccompiler's code for every call's rules and only
//! changes how a number finds them: the listed calls are split into groups
//! of [`GROUP`] consecutive numbers, each group compiled by seccompiler as a
//! filter of its own (its linear chain ends in the default action), and a
//! binary search on the number (`JGE` comparisons) leads to the right group.
//! A call now passes a handful of comparisons instead of up to every listed
//! one, and the program grows by two instructions per tree node.

use std::collections::BTreeMap;

use seccompiler::{sock_filter, BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

/// Listed calls per linear group: small enough that a lookup is short,
/// large enough that the tree adds few instructions.
pub const GROUP: usize = 6;

/// The most instructions a classic BPF program may have (BPF_MAXINSNS).
const MAX_LEN: usize = 4096;

// Classic BPF opcodes (linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
/// Offset of the call number in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;

/// Why the tree could not be laid out: seccompiler's output was not shaped
/// as this module expects (a different seccompiler version), or the
/// program is too large.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// seccompiler rejected a group's rules.
    #[error("seccompiler: {0}")]
    Backend(#[from] seccompiler::BackendError),
    /// A group's program did not start with the architecture check and
    /// the load of the call number, or did not end in a return.
    #[error("unexpected seccompiler output for the calls from {first}: {what}")]
    Layout {
        /// The group's first call number.
        first: i64,
        /// What differed.
        what: &'static str,
    },
    /// More than BPF_MAXINSNS instructions.
    #[error("the filter would have {0} instructions, more than {MAX_LEN}")]
    TooLarge(usize),
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// seccompiler's program for `rules` (mismatch and match actions as given),
/// split into its head (architecture check and the load of the call number)
/// and its body (the linear chain, ending in the mismatch action).
fn compile_group(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: &SeccompAction,
    matched: &SeccompAction,
    arch: TargetArch,
) -> Result<(BpfProgram, BpfProgram), TreeError> {
    let first = rules.keys().next().copied().unwrap_or(-1);
    let program: BpfProgram =
        SeccompFilter::new(rules, mismatch.clone(), matched.clone(), arch)?.try_into()?;
    // The head is the architecture check (ending in the load of the call
    // number): everything up to and including the first load of `nr`.
    let load_nr = program
        .iter()
        .position(|i| i.code == BPF_LD_W_ABS && i.k == NR_OFFSET)
        .ok_or(TreeError::Layout {
            first,
            what: "no load of the call number",
        })?;
    if program.last().map(|i| i.code) != Some(BPF_RET_K) {
        return Err(TreeError::Layout {
            first,
            what: "the last instruction is not a return",
        });
    }
    let body = program[load_nr + 1..].to_vec();
    let mut head = program;
    head.truncate(load_nr + 1);
    Ok((head, body))
}

/// The code for groups `bodies` (first call numbers `firsts`): a linear
/// group, or a comparison with the first number of the upper half, the
/// lower half, the upper half.
fn tree(firsts: &[u32], bodies: &[BpfProgram]) -> BpfProgram {
    if bodies.len() == 1 {
        return bodies[0].clone();
    }
    let mid = bodies.len() / 2;
    let lower = tree(&firsts[..mid], &bodies[..mid]);
    let upper = tree(&firsts[mid..], &bodies[mid..]);
    let mut code = Vec::with_capacity(lower.len() + upper.len() + 2);
    match u8::try_from(lower.len()) {
        // nr >= pivot: jump over the lower half.
        Ok(skip) => code.push(jump(BPF_JMP_JGE_K, firsts[mid], skip, 0)),
        // Too far for a conditional jump: through an unconditional one.
        Err(_) => {
            code.push(jump(BPF_JMP_JGE_K, firsts[mid], 0, 1));
            code.push(jump(BPF_JMP_JA, lower.len() as u32, 0, 0));
        }
    }
    code.extend(lower);
    code.extend(upper);
    code
}

/// The filter seccompiler would build from `rules`, with the same verdict
/// for every call and argument, laid out as a search tree (see the module
/// documentation).
pub fn tree_program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, TreeError> {
    if rules.is_empty() {
        return Ok(SeccompFilter::new(rules, mismatch, matched, arch)?.try_into()?);
    }
    let mut groups: Vec<BTreeMap<i64, Vec<SeccompRule>>> = Vec::new();
    for (nr, chain) in rules {
        match groups.last_mut() {
            Some(g) if g.len() < GROUP => {
                g.insert(nr, chain);
            }
            _ => groups.push(BTreeMap::from([(nr, chain)])),
        }
    }
    let mut head = None;
    let mut firsts = Vec::new();
    let mut bodies = Vec::new();
    for g in groups {
        let first = g.keys().next().copied().unwrap_or(0);
        let (h, body) = compile_group(g, &mismatch, &matched, arch)?;
        // Every group's head is the same architecture check.
        if head.as_ref().is_some_and(|known: &BpfProgram| *known != h) {
            return Err(TreeError::Layout {
                first,
                what: "its architecture check differs from the first group's",
            });
        }
        head.get_or_insert(h);
        firsts.push(u32::try_from(first).map_err(|_| TreeError::Layout {
            first,
            what: "the call number does not fit in 32 bits",
        })?);
        bodies.push(body);
    }
    let mut program = head.unwrap_or_default();
    program.extend(tree(&firsts, &bodies));
    if program.len() > MAX_LEN {
        return Err(TreeError::TooLarge(program.len()));
    }
    Ok(program)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition};

    const TRAP: SeccompAction = SeccompAction::Trap;
    const ALLOW: SeccompAction = SeccompAction::Allow;

    /// seccompiler's own linear filter for `rules` (calls not listed trap),
    /// the reference the tree must decide as.
    pub(crate) fn linear_program(rules: BTreeMap<i64, Vec<SeccompRule>>) -> BpfProgram {
        SeccompFilter::new(rules, TRAP, ALLOW, TargetArch::x86_64)
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// What a classic BPF seccomp program returns for call `nr` with
    /// `args` on x86_64: the instructions seccompiler and the tree use.
    pub(crate) fn run(program: &[sock_filter], nr: u32, args: &[u64; 6]) -> u32 {
        const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
        let word = |offset: u32| -> u32 {
            match offset {
                0 => nr,
                4 => AUDIT_ARCH_X86_64,
                16..=63 => {
                    let arg = args[((offset - 16) / 8) as usize];
                    if offset.is_multiple_of(8) {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                other => panic!("load from offset {other}"),
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &program[pc];
            pc += 1;
            match i.code {
                0x20 => acc = word(i.k),
                0x54 => acc &= i.k,
                0x06 => return i.k,
                0x05 => pc += i.k as usize,
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let taken = match i.code {
                        0x15 => acc == i.k,
                        0x25 => acc > i.k,
                        0x35 => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("opcode {other:#x} at {}", pc - 1),
            }
        }
    }

    fn rule(arg: u8, op: SeccompCmpOp, value: u64) -> SeccompRule {
        SeccompRule::new(vec![SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Dword,
            op,
            value,
        )
        .unwrap()])
        .unwrap()
    }

    #[test]
    fn test_tree_program_matches_linear_chain() {
        // 40 calls, some with argument rules, across several groups.
        let mut rules = BTreeMap::new();
        for nr in (0..200).step_by(5) {
            let chain = match nr % 3 {
                0 => vec![],
                1 => vec![
                    rule(1, SeccompCmpOp::Eq, 0xae80),
                    rule(1, SeccompCmpOp::Eq, 7),
                ],
                _ => vec![rule(2, SeccompCmpOp::MaskedEq(0xf), 3)],
            };
            rules.insert(nr, chain);
        }
        let linear = linear_program(rules.clone());
        let tree = tree_program(rules, TRAP, ALLOW, TargetArch::x86_64).unwrap();
        for nr in 0..260 {
            for args in [
                [0; 6],
                [0, 0xae80, 0, 0, 0, 0],
                [0, 7, 0, 0, 0, 0],
                [0, 0, 0x13, 0, 0, 0],
                [0, 8, 4, 0, 0, 0],
            ] {
                assert_eq!(
                    run(&tree, nr, &args),
                    run(&linear, nr, &args),
                    "nr {nr} {args:x?}"
                );
            }
        }
        // Allowed calls are found after a few comparisons, not a chain.
        assert!(
            tree.len() < linear.len() + 20,
            "{} vs {}",
            tree.len(),
            linear.len()
        );
    }

    #[test]
    fn test_tree_program_of_one_group_is_the_linear_chain() {
        let rules: BTreeMap<i64, Vec<SeccompRule>> = [(1, vec![]), (3, vec![])].into();
        let linear = linear_program(rules.clone());
        let tree = tree_program(rules, TRAP, ALLOW, TargetArch::x86_64).unwrap();
        assert_eq!(tree, linear);
    }
}
