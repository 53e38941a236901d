use redlock::distributed_lock;

#[distributed_lock(key = "job:<id>", on_busy = "skip")]
async fn job(id: u64) -> u64 {
    id
}

fn main() {}
