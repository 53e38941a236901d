use redlock::distributed_lock;

#[distributed_lock(key = "account:<id>")]
async fn balance(id: u64) -> i32 {
    id as i32
}

#[distributed_lock(key = "account:<id>")]
async fn nothing(id: u64) {
    let _ = id;
}

fn main() {}
