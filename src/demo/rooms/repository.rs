//! Storage port for rooms and its in-memory adapter.
//!
//! Owns the `RoomRepository` trait the use cases call, the `RoomFilter` it accepts and
//! `MemoryRepository`, a fixed seed so that every demo instance serves identical data. It depends
//! only on the entity; validation of user input belongs to the use cases, not here.

use super::entity::Room;

/// Criteria a listed room must meet; `None` means "any".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomFilter {
    /// Keep only rooms whose availability equals this.
    pub available: Option<bool>,
    /// Keep only rooms cheaper than this.
    pub price_lt: Option<u32>,
    /// Keep only rooms dearer than this.
    pub price_gt: Option<u32>,
}

impl RoomFilter {
    /// Whether `room` satisfies every criterion of the filter.
    pub fn matches(&self, room: &Room) -> bool {
        self.available.is_none_or(|a| room.available == a)
            && self.price_lt.is_none_or(|p| room.price < p)
            && self.price_gt.is_none_or(|p| room.price > p)
    }
}

/// Where rooms come from; `Send + Sync` because one repository serves every connection task.
pub trait RoomRepository: Send + Sync {
    /// Rooms matching `filter`, in the repository's stable order.
    fn list(&self, filter: &RoomFilter) -> Vec<Room>;
    /// The room with this exact `code`, if any.
    fn get(&self, code: &str) -> Option<Room>;
}

/// A read-only repository over rooms held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryRepository {
    rooms: Vec<Room>,
}

impl MemoryRepository {
    /// A repository over exactly these rooms, kept in the given order.
    pub fn new(rooms: Vec<Room>) -> Self {
        Self { rooms }
    }

    /// The fixed demo seed: seven rooms around London with deterministic codes.
    pub fn seeded() -> Self {
        // (code, size, price, latitude, longitude, available); fixed so that every instance
        // behind the balancer answers the same and a client cannot tell them apart but by header.
        const SEED: [(&str, u32, u32, f64, f64, bool); 7] = [
            (
                "f853578c-fc0f-4e65-81b8-566c5dffa35a",
                215,
                39,
                51.75436293,
                -0.09998975,
                true,
            ),
            (
                "fe2c3195-aeff-487a-a08f-e0bdc0ec6e9a",
                405,
                66,
                51.74640997,
                -0.09999990,
                true,
            ),
            (
                "913694c6-435a-4366-ba0d-da5334a611b2",
                56,
                60,
                51.45993135,
                0.03362760,
                false,
            ),
            (
                "eed76e77-55c1-41ce-985d-ca49bf6c0585",
                93,
                48,
                51.39737890,
                0.01234578,
                true,
            ),
            (
                "2b7a8c5e-1f3d-4e9a-b6c4-0d8e7f6a5b41",
                120,
                85,
                51.50735100,
                -0.12775800,
                false,
            ),
            (
                "6c1e9d2a-7b4f-4c3e-9a8d-5f2e1b0c7d62",
                38,
                29,
                51.52376400,
                -0.15856800,
                true,
            ),
            (
                "a4d3f2e1-0c9b-4a8d-8e7f-6b5a4c3d2e13",
                260,
                120,
                51.48196500,
                -0.19101700,
                false,
            ),
        ];
        Self::new(
            SEED.iter()
                .map(|&(code, size, price, latitude, longitude, available)| Room {
                    code: code.to_owned(),
                    size,
                    price,
                    latitude,
                    longitude,
                    available,
                })
                .collect(),
        )
    }
}

impl RoomRepository for MemoryRepository {
    fn list(&self, filter: &RoomFilter) -> Vec<Room> {
        self.rooms.iter().filter(|r| filter.matches(r)).cloned().collect()
    }

    fn get(&self, code: &str) -> Option<Room> {
        self.rooms.iter().find(|r| r.code == code).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices(rooms: &[Room]) -> Vec<u32> {
        rooms.iter().map(|r| r.price).collect()
    }

    #[test]
    fn seed_is_deterministic_with_unique_codes() {
        let rooms = MemoryRepository::seeded().list(&RoomFilter::default());
        assert_eq!(rooms.len(), 7);
        assert_eq!(rooms, MemoryRepository::seeded().list(&RoomFilter::default()));
        let mut codes: Vec<_> = rooms.iter().map(|r| r.code.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 7);
    }

    #[test]
    fn filter_by_availability_and_price() {
        let repo = MemoryRepository::seeded();
        let available = RoomFilter {
            available: Some(true),
            ..Default::default()
        };
        assert_eq!(prices(&repo.list(&available)), [39, 66, 48, 29]);
        let booked = RoomFilter {
            available: Some(false),
            ..Default::default()
        };
        assert_eq!(prices(&repo.list(&booked)), [60, 85, 120]);
        let band = RoomFilter {
            price_gt: Some(39),
            price_lt: Some(85),
            ..Default::default()
        };
        assert_eq!(prices(&repo.list(&band)), [66, 60, 48]);
        let none = RoomFilter {
            available: Some(true),
            price_gt: Some(100),
            ..Default::default()
        };
        assert!(repo.list(&none).is_empty());
    }

    #[test]
    fn get_finds_by_exact_code_only() {
        let repo = MemoryRepository::seeded();
        let room = repo
            .get("913694c6-435a-4366-ba0d-da5334a611b2")
            .expect("seeded room");
        assert_eq!(room.size, 56);
        assert_eq!(repo.get("913694C6-435A-4366-BA0D-DA5334A611B2"), None);
        assert_eq!(repo.get(""), None);
    }
}
