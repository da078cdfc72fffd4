use poolalloc::PooledAllocator;
use std::collections::HashMap;
#[global_allocator]
static A: PooledAllocator = PooledAllocator::new();
fn main() {
    let mut handles = vec![];
    for t in 0..4 {
        handles.push(std::thread::spawn(move || {
            let mut m: HashMap<String, Vec<u64>> = HashMap::new();
            for i in 0..20_000u64 {
                m.entry(format!("k{}", i % 1000)).or_default().push(i * t);
                if i % 7 == 0 {
                    m.remove(&format!("k{}", (i + 3) % 1000));
                }
            }
            let big: Vec<u8> = vec![7; 3 << 20];
            m.len() + big.len()
        }));
    }
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("total {total}");
    println!("{}", A.metrics());
    A.trim();
    println!("after trim:\n{}", A.metrics());
}
