//! Application rules for rooms: list with a validated filter, get one by code.
//!
//! Owns the translation of raw request parameters into a `RoomFilter` and the errors a caller can
//! be refused with. It sees the repository only through the `RoomRepository` trait and never
//! touches HTTP; the adapter decides which status code each `RoomsError` becomes.

use std::fmt;

use super::entity::Room;
use super::repository::{RoomFilter, RoomRepository};

/// Why a rooms use case refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomsError {
    /// `status` was neither `available` nor `booked`.
    InvalidStatus(String),
    /// A price bound (`price_lt` or `price_gt`) was not a whole non-negative number.
    InvalidPrice {
        /// The parameter's name.
        param: &'static str,
        /// The value as received.
        value: String,
    },
    /// No room has this code.
    NotFound(String),
}

impl fmt::Display for RoomsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidStatus(s) => {
                write!(f, "invalid status {s:?}: expected available or booked")
            }
            Self::InvalidPrice { param, value } => {
                write!(f, "invalid {param} {value:?}: expected a whole number")
            }
            Self::NotFound(code) => write!(f, "no room with code {code:?}"),
        }
    }
}

impl std::error::Error for RoomsError {}

/// Builds a filter from `(name, value)` query pairs; unknown names are ignored, bad values refused.
pub fn parse_filter<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<RoomFilter, RoomsError> {
    let price = |param: &'static str, value: &str| {
        value.parse().map_err(|_| RoomsError::InvalidPrice {
            param,
            value: value.to_owned(),
        })
    };
    let mut filter = RoomFilter::default();
    for (name, value) in params {
        match name {
            "status" => {
                filter.available = Some(match value {
                    "available" => true,
                    "booked" => false,
                    other => return Err(RoomsError::InvalidStatus(other.to_owned())),
                })
            }
            "price_lt" => filter.price_lt = Some(price("price_lt", value)?),
            "price_gt" => filter.price_gt = Some(price("price_gt", value)?),
            // Tolerated so that cache busters or tracking parameters do not break a listing.
            _ => {}
        }
    }
    Ok(filter)
}

/// Lists rooms matching validated query parameters.
pub struct ListRooms<'r, R: RoomRepository + ?Sized> {
    repo: &'r R,
}

impl<'r, R: RoomRepository + ?Sized> ListRooms<'r, R> {
    /// A use case reading from `repo`.
    pub fn new(repo: &'r R) -> Self {
        Self { repo }
    }

    /// Validates `params` into a filter and returns the matching rooms.
    pub fn execute<'a>(
        &self,
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<Room>, RoomsError> {
        Ok(self.repo.list(&parse_filter(params)?))
    }
}

/// Fetches one room by its code.
pub struct GetRoom<'r, R: RoomRepository + ?Sized> {
    repo: &'r R,
}

impl<'r, R: RoomRepository + ?Sized> GetRoom<'r, R> {
    /// A use case reading from `repo`.
    pub fn new(repo: &'r R) -> Self {
        Self { repo }
    }

    /// The room with `code`, or `RoomsError::NotFound`.
    pub fn execute(&self, code: &str) -> Result<Room, RoomsError> {
        self.repo
            .get(code)
            .ok_or_else(|| RoomsError::NotFound(code.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Returns one canned room and records the filters it was asked with, so the tests see
    /// exactly what the use case passed down without depending on any real storage.
    struct FakeRepo {
        room: Room,
        seen: Mutex<Vec<RoomFilter>>,
    }

    impl FakeRepo {
        fn new() -> Self {
            let room = Room {
                code: "00000000-0000-4000-8000-000000000001".into(),
                size: 10,
                price: 20,
                latitude: 0.0,
                longitude: 0.0,
                available: false,
            };
            Self {
                room,
                seen: Mutex::new(Vec::new()),
            }
        }

        fn seen(&self) -> Vec<RoomFilter> {
            self.seen.lock().expect("test mutex is never poisoned").clone()
        }
    }

    impl RoomRepository for FakeRepo {
        fn list(&self, filter: &RoomFilter) -> Vec<Room> {
            self.seen
                .lock()
                .expect("test mutex is never poisoned")
                .push(*filter);
            vec![self.room.clone()]
        }

        fn get(&self, code: &str) -> Option<Room> {
            (code == self.room.code).then(|| self.room.clone())
        }
    }

    #[test]
    fn list_passes_the_validated_filter_down() {
        let repo = FakeRepo::new();
        let rooms = ListRooms::new(&repo)
            .execute([("status", "available"), ("price_lt", "50"), ("utm", "x")])
            .expect("valid parameters");
        assert_eq!(rooms, std::slice::from_ref(&repo.room));
        ListRooms::new(&repo)
            .execute([("status", "booked"), ("price_gt", "7")])
            .expect("valid");
        ListRooms::new(&repo).execute([]).expect("no parameters is valid");
        assert_eq!(
            repo.seen(),
            [
                RoomFilter {
                    available: Some(true),
                    price_lt: Some(50),
                    price_gt: None
                },
                RoomFilter {
                    available: Some(false),
                    price_lt: None,
                    price_gt: Some(7)
                },
                RoomFilter::default(),
            ]
        );
    }

    #[test]
    fn list_refuses_bad_parameters_without_reaching_the_repository() {
        let repo = FakeRepo::new();
        let list = ListRooms::new(&repo);
        assert_eq!(
            list.execute([("status", "free")]),
            Err(RoomsError::InvalidStatus("free".into()))
        );
        assert_eq!(
            list.execute([("price_gt", "-1")]),
            Err(RoomsError::InvalidPrice {
                param: "price_gt",
                value: "-1".into()
            })
        );
        assert!(list.execute([("price_lt", "")]).is_err());
        assert!(repo.seen().is_empty());
    }

    #[test]
    fn get_returns_the_room_or_not_found() {
        let repo = FakeRepo::new();
        let get = GetRoom::new(&repo as &dyn RoomRepository);
        assert_eq!(get.execute(&repo.room.code), Ok(repo.room.clone()));
        assert_eq!(get.execute("nope"), Err(RoomsError::NotFound("nope".into())));
    }
}
