//! Who is making a request: the identity every authenticated request carries.
//!
//! The TLS front door derives it from a client certificate (CN is the user, each O a group) or a
//! bearer token; in-process components put it in the request extensions themselves. It mirrors
//! Kubernetes' `user.Info`.

use serde::{Deserialize, Serialize};

/// Group every authenticated user belongs to.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Group of requests that presented no credentials.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The superuser group: allowed everything, including the actor controls.
pub const MASTERS: &str = "system:masters";
/// The user name of requests without credentials.
pub const ANONYMOUS: &str = "system:anonymous";

/// An authenticated (or anonymous) requester.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user name, e.g. `system:admin` or `system:node:worker-1`.
    pub name: String,
    /// Groups, including `system:authenticated` for every authenticated user.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with `groups`, plus the implicit `system:authenticated` group.
    pub fn authenticated(
        name: impl Into<String>,
        groups: impl IntoIterator<Item = String>,
    ) -> Self {
        let mut groups: Vec<String> = groups.into_iter().collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.to_owned());
        }
        UserInfo {
            name: name.into(),
            groups,
        }
    }

    /// The identity of a request with no credentials.
    pub fn anonymous() -> Self {
        UserInfo {
            name: ANONYMOUS.to_owned(),
            groups: vec![UNAUTHENTICATED.to_owned()],
        }
    }

    /// Whether the request presented valid credentials.
    pub fn is_authenticated(&self) -> bool {
        self.groups.iter().any(|g| g == AUTHENTICATED)
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticated_users_get_the_group_once() {
        let u = UserInfo::authenticated(
            "system:admin",
            [MASTERS.to_owned(), AUTHENTICATED.to_owned()],
        );
        assert_eq!(u.groups.iter().filter(|g| *g == AUTHENTICATED).count(), 1);
        assert!(u.in_group(MASTERS));
        assert!(!UserInfo::anonymous().is_authenticated());
    }
}
